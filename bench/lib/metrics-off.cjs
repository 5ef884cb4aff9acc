// Bench only, preloaded into the api for the "observability off" side (`node -r` this file): it
// turns prom-client's recording calls into no-ops and skips the default process metrics, so
// "off" costs nothing for metrics, as the api has (on purpose) no switch to turn them off.
// prom-client sets some of these methods on each instance in its constructors, so the exported
// classes are replaced by subclasses that override them after construction. It patches the
// prom-client the api really loads (resolved from packages/runtime), before the api imports it.
const { join } = require('node:path');

const runtimeDir = join(__dirname, '..', '..', 'packages', 'runtime');
const promClient = require(require.resolve('prom-client', { paths: [runtimeDir] }));
const noop = () => {};
const noTimer = () => noop;
const quiet = { inc: noop, dec: noop, set: noop, observe: noop, startTimer: noTimer };
for (const name of ['Counter', 'Gauge', 'Histogram', 'Summary']) {
  const Base = promClient[name];
  promClient[name] = class extends Base {
    constructor(config) {
      super(config);
      Object.assign(this, quiet);
      this.labels = () => quiet;
    }
  };
}
promClient.collectDefaultMetrics = noop;
