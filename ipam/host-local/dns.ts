/** resolv.conf into a CNI `dns` object: nameserver, domain, search, options (the reference's rules). */
import { readFileSync } from 'node:fs';
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import type { DNS } from '../../shared/cni/types.ts';

export function parseResolvConf(text: string): DNS {
  const dns: DNS = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const [key, ...rest] = line.split(/\s+/);
    if (rest.length === 0) continue;
    switch (key) {
      case 'nameserver':
        (dns.nameservers ??= []).push(rest[0]);
        break;
      case 'domain':
        dns.domain = rest[0];
        break;
      case 'search':
        (dns.search ??= []).push(...rest);
        break;
      case 'options':
        (dns.options ??= []).push(...rest);
        break;
    }
  }
  return dns;
}

export function readResolvConf(file: string): DNS {
  try {
    return parseResolvConf(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CniError(ErrorCode.IOFailure, `ipam.resolvConf: cannot read ${file}`, (e as Error).message);
  }
}
