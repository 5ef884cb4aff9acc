import { createInterface } from 'node:readline';
import { CliError, EXIT } from './errors.js';

/** Asks a question on the terminal (stdin must be a TTY); the answer is echoed. */
export async function ask(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  try {
    return await new Promise<string>((resolve, reject) => {
      rl.once('SIGINT', () => reject(new CliError('INTERRUPTED', 'interrupted', 130)));
      rl.question(question, resolve);
    });
  } finally {
    rl.close();
  }
}

/** Asks for a secret on the terminal without echoing it. */
export async function askSecret(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.resume();
  stdin.setEncoding('utf8');
  try {
    return await new Promise<string>((resolve, reject) => {
      let value = '';
      const onData = (chunk: string) => {
        for (const ch of chunk) {
          if (ch === '\r' || ch === '\n' || ch === '\u0004') {
            stdin.off('data', onData);
            process.stderr.write('\n');
            resolve(value);
            return;
          }
          if (ch === '\u0003') {
            stdin.off('data', onData);
            process.stderr.write('\n');
            reject(new CliError('INTERRUPTED', 'interrupted', 130));
            return;
          }
          if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
          else value += ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
  }
}

/** Reads all of stdin (for --password-stdin and --file -). */
export async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new CliError('USAGE', 'stdin is a terminal: pipe the input in', EXIT.USAGE);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
