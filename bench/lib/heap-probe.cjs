// Preloaded (`node --expose-gc -r bench/lib/heap-probe.cjs server.js`) into a process under test
// by the connections benchmark: answers the IPC message 'bench:heap' with the heap used after a
// full GC, so heap per connection is not blurred by garbage. Touches nothing else.
process.on('message', (m) => {
  if (m !== 'bench:heap') return;
  if (typeof global.gc === 'function') { global.gc(); global.gc(); }
  process.send?.({ benchHeap: process.memoryUsage().heapUsed, rss: process.memoryUsage().rss });
});
