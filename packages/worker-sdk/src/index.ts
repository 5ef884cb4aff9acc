/**
 * The worker SDK in one import. Everything here is light (no native modules), so a barrel is fine;
 * the subpaths (`/worker`, `/process`, `/errors`, `/child`, `/files`, `/paths`, `/progress`) exist too.
 */
export * from './errors.js';
export * from './paths.js';
export * from './child.js';
export * from './files.js';
export * from './progress.js';
export * from './worker.js';
export * from './process.js';
