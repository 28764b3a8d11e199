// esbuild plugin: the etcd3 client reads its .proto files from disk when it loads
// (`loadSync(`${__dirname}/../proto/rpc.proto`)`), which a single-executable bundle cannot do.
// At build time we parse the protos once (protobufjs, as @grpc/proto-loader would) and inline
// the descriptor as JSON, handed to proto-loader's `fromJSON` with the same options.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export function etcd3ProtoInline() {
  return {
    name: 'etcd3-proto-inline',
    setup(b) {
      b.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
        const req = createRequire(args.path);
        const protobuf = req('protobufjs');
        const protoFile = path.join(path.dirname(args.path), '..', 'proto', 'rpc.proto');
        const root = new protobuf.Root();
        root.loadSync(protoFile, { keepCase: true });
        const json = JSON.stringify(root.toJSON());
        const src = readFileSync(args.path, 'utf8');
        const call = /\(0, proto_loader_1\.loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`, \{/;
        if (!call.test(src)) throw new Error('etcd3-proto-inline: connection-pool.js no longer matches; update scripts/esbuild-etcd3.mjs');
        return { contents: src.replace(call, `(0, proto_loader_1.fromJSON)(${json}, {`), loader: 'js' };
      });
    },
  };
}
