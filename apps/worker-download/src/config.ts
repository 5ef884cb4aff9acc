import { booleanField, byteSizeField, integerField } from '@dubgate/runtime/config';

/** Settings of the download worker, beside the common worker ones (worker-sdk's runStageWorkerProcess). */
export const DOWNLOAD_FIELDS = [
  byteSizeField('DOWNLOAD_MAX_BYTES', {
    doc: 'largest file the download worker accepts (accepts 500MB, 2GiB, ...)',
    default: 10 * 2 ** 30,
    defaultDoc: '10GiB',
  }),
  booleanField('ALLOW_PRIVATE_URLS', {
    doc: 'fetch from loopback and private (LAN) addresses; link-local and metadata stay refused (same meaning as the api\'s)',
    default: false,
  }),
  integerField('DOWNLOAD_IDLE_TIMEOUT_MS', {
    doc: 'a transfer that receives nothing for this long fails and is retried',
    default: 60_000,
    min: 1_000,
    max: 3_600_000,
  }),
] as const;
