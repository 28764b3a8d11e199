/**
 * Linux errno numbers → symbolic name, the C library's text (what `ip` prints after
 * "RTNETLINK answers:") and the CNI error code a plugin reports. Pure.
 */
import { ErrorCode } from '../../cni/errors.ts';

const TABLE: Record<number, [string, string]> = {
  1: ['EPERM', 'Operation not permitted'],
  2: ['ENOENT', 'No such file or directory'],
  3: ['ESRCH', 'No such process'],
  4: ['EINTR', 'Interrupted system call'],
  5: ['EIO', 'Input/output error'],
  6: ['ENXIO', 'No such device or address'],
  7: ['E2BIG', 'Argument list too long'],
  9: ['EBADF', 'Bad file descriptor'],
  11: ['EAGAIN', 'Resource temporarily unavailable'],
  12: ['ENOMEM', 'Cannot allocate memory'],
  13: ['EACCES', 'Permission denied'],
  14: ['EFAULT', 'Bad address'],
  16: ['EBUSY', 'Device or resource busy'],
  17: ['EEXIST', 'File exists'],
  18: ['EXDEV', 'Invalid cross-device link'],
  19: ['ENODEV', 'No such device'],
  20: ['ENOTDIR', 'Not a directory'],
  21: ['EISDIR', 'Is a directory'],
  22: ['EINVAL', 'Invalid argument'],
  23: ['ENFILE', 'Too many open files in system'],
  24: ['EMFILE', 'Too many open files'],
  28: ['ENOSPC', 'No space left on device'],
  34: ['ERANGE', 'Numerical result out of range'],
  35: ['EDEADLK', 'Resource deadlock avoided'],
  36: ['ENAMETOOLONG', 'File name too long'],
  37: ['ENOLCK', 'No locks available'],
  38: ['ENOSYS', 'Function not implemented'],
  39: ['ENOTEMPTY', 'Directory not empty'],
  61: ['ENODATA', 'No data available'],
  67: ['ENOLINK', 'Link has been severed'],
  71: ['EPROTO', 'Protocol error'],
  75: ['EOVERFLOW', 'Value too large for defined data type'],
  88: ['ENOTSOCK', 'Socket operation on non-socket'],
  90: ['EMSGSIZE', 'Message too long'],
  92: ['ENOPROTOOPT', 'Protocol not available'],
  93: ['EPROTONOSUPPORT', 'Protocol not supported'],
  95: ['EOPNOTSUPP', 'Operation not supported'],
  97: ['EAFNOSUPPORT', 'Address family not supported by protocol'],
  98: ['EADDRINUSE', 'Address already in use'],
  99: ['EADDRNOTAVAIL', 'Cannot assign requested address'],
  100: ['ENETDOWN', 'Network is down'],
  101: ['ENETUNREACH', 'Network is unreachable'],
  105: ['ENOBUFS', 'No buffer space available'],
  110: ['ETIMEDOUT', 'Connection timed out'],
  113: ['EHOSTUNREACH', 'No route to host'],
  524: ['ENOTSUPP', 'Unknown error 524'],
};

export const errnoName = (errno: number): string => TABLE[errno]?.[0] ?? `E${errno}`;
/** strerror(3) text, as `ip` prints it. */
export const errnoText = (errno: number): string => TABLE[errno]?.[1] ?? `Unknown error ${errno}`;

/**
 * The CNI code for a refused kernel change. The `ip` path reports every refusal as 100 and
 * callers that know better (a taken name, a missing link kind) remap by the text, which this
 * path keeps (errno text and the kernel's extended-ack message): so 100 here too, but for the
 * cases no caller can mean otherwise: a missing feature (101) and a busy lock (11).
 */
export function codeOfErrno(errno: number): number {
  switch (errno) {
    case 93: // EPROTONOSUPPORT
    case 97: // EAFNOSUPPORT
      return ErrorCode.KernelFeatureMissing;
    case 11: // EAGAIN (flock LOCK_NB)
      return ErrorCode.TryAgainLater;
    default:
      return ErrorCode.KernelOperation;
  }
}
