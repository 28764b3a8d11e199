// Entry of the single-executable application: run the plugins' bundle, embedded as an asset
// with its eager V8 code cache (see shared/vendor.cjs).
'use strict';
if (process.env.CNI_TS_TRACE) process.stderr.write(`[trace ${process.pid} +${performance.now().toFixed(1)} ms] runtime started\n`);
require('../shared/vendor.cjs').runAsset('main.cjs', 'main.cache', require);
