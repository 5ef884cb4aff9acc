import type { Job } from '@dubgate/contracts/jobs';

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

export function formatSpeed(bps: number | null | undefined): string {
  return bps === null || bps === undefined ? '-' : `${formatBytes(bps)}/s`;
}

export function formatEta(sec: number | null | undefined): string {
  if (sec === null || sec === undefined || !Number.isFinite(sec)) return '-';
  const s = Math.max(0, Math.round(sec));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(r).padStart(2, '0')}` : `${m}:${String(r).padStart(2, '0')}`;
}

/** Pads/truncates cells into aligned columns. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n');
}

export function jobProgressText(job: Job): string {
  const p = job.progress;
  if (!p) return '';
  return `${p.stage} ${p.percent.toFixed(1)}%`;
}

export function jobLine(job: Job): string {
  return `${job.id}  ${job.status}  ${job.url}`;
}

export function jobDetails(job: Job): string {
  const lines: Array<[string, string]> = [
    ['id', job.id],
    ['status', job.status],
    ['url', job.url],
    ['dubbing', job.requestedDubbing ? `yes (${job.targetLang ?? '?'})` : 'no'],
    ['format', job.formatPreset],
    ['container', job.outputContainer],
    ['generation', String(job.generation)],
    ['attempt', String(job.attempt)],
  ];
  if (job.progress) {
    const p = job.progress;
    lines.push(['progress', `${p.stage} ${p.percent.toFixed(1)}%  speed ${formatSpeed(p.speed)}  eta ${formatEta(p.eta)}${p.step ? `  ${p.step}` : ''}`]);
  }
  if (job.holdReason) lines.push(['held', job.holdReason]);
  if (job.failedStage) lines.push(['failed stage', job.failedStage]);
  if (job.error) lines.push(['error', `${job.error.code}: ${job.error.message}`]);
  if (job.outputPath) lines.push(['output', job.outputPath]);
  lines.push(['created', job.createdAt], ['updated', job.updatedAt]);
  const w = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${`${k}:`.padEnd(w + 1)} ${v}`).join('\n');
}
