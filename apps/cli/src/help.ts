export const GLOBAL_HELP = `Global options (every command):
  --json                 machine-readable output: one JSON document (JSON lines for follow and logs --follow)
  --token <token>        bearer token (session or API token); else $DUBGATE_TOKEN, else the config file
  --api-url <url>        REST API; else $DUBGATE_API_URL, else the config file, else http://127.0.0.1:3000
  --realtime-url <url>   Socket.IO server; else $DUBGATE_REALTIME_URL, else the config file, else http://127.0.0.1:3001
  -h, --help             help for the command

Config file: $DUBGATE_CONFIG or ~/.config/dubgate/config.json (mode 0600; refused if group/world readable).
Exit codes: 0 ok, 1 failure (or job FAILED in follow), 2 job CANCELED (follow), 3 usage error,
            4 authentication error, 5 not found, 6 connection error.
Errors are one line on stderr: "error: <CODE>: <message>".`;

export const MAIN_HELP = `dubgate: command line client of the dubgate gateway (REST + WebSocket API)

Usage: dubgate <command> [options]

Commands:
  login                     log in with username and password; stores the session token
  logout                    end the session and forget the stored token
  token create <name>       create an API token (printed once)   [--expires-days N]
  token list                list your API tokens
  token revoke <id>         revoke an API token
  submit <url>...           submit one job per URL   [--dub <lang>] [--format <preset>] [--container <c>] [--file <f>] [--idempotency-key <k>]
  list                      list jobs, newest first   [--status A,B] [--search s] [--limit n] [--all]
  show <id>                 a job with its media and recent events
  cancel <id>               cancel an active job
  retry <id>                retry a failed or canceled job
  resume <id>               resume a job that failed while dubbing
  delete <id>               delete a job and its files (asks on a terminal unless --yes)
  logs <id>                 a job's event log   [--after n] [--level l] [--limit n] [--follow]
  follow <id>               live progress until the job ends (exit 0 COMPLETE, 1 FAILED, 2 CANCELED)
  help [command]            this help, or a command's

${GLOBAL_HELP}`;

export const COMMAND_HELP: Record<string, string> = {
  login: `Usage: dubgate login [--username <name>] [--password-stdin]

Logs in (POST /api/auth/login) and stores the session token, its expiry and the API URL in the
config file (created with mode 0600 in a 0700 directory).
  --username <name>    user name; else $DUBGATE_USERNAME, else asked on a terminal
  --password-stdin     read the password from the first line of stdin; else $DUBGATE_PASSWORD,
                       else asked on a terminal (not echoed)`,
  logout: `Usage: dubgate logout

Ends the stored session on the server (POST /api/auth/logout) and removes the token from the
config file. A token given with --token or $DUBGATE_TOKEN is ended on the server too.`,
  token: `Usage: dubgate token create <name> [--expires-days N]
       dubgate token list
       dubgate token revoke <id>

API tokens (dgt_…) for scripts. The token is printed once at creation; only its hash is stored.
Use it with --token or $DUBGATE_TOKEN. (Realtime nodes take session tokens only: with an API
token, follow polls the REST API instead of listening on the WebSocket.)`,
  submit: `Usage: dubgate submit <url>... [options]

Submits one job per URL.
  --dub <lang>             dub into this language (BCP 47, e.g. es, pt-BR)
  --format <preset>        best, bestvideo+bestaudio, 1080p, 720p, 480p, audio-only, smallest
  --container <c>          mp4, mkv, webm, mov
  --file <path>            read URLs from a file, one per line ("#" starts a comment; "-" is stdin)
  --idempotency-key <k>    Idempotency-Key header (with several URLs, "<k>-<n>" for the n-th)
Prints each job's id (text) or {"jobs":[...],"errors":[...]} (--json). Exit 1 if any URL was refused.`,
  list: `Usage: dubgate list [--status A,B] [--search s] [--limit n] [--all]

Lists jobs, newest first.
  --status A,B     only these states (QUEUED, DOWNLOADING, DOWNLOADED, DUBBING, DUBBED, MUXING, COMPLETE, FAILED, CANCELED)
  --search s       match in URL or title
  --limit n        page size (1-200, default 50)
  --all            follow nextCursor through every page`,
  show: `Usage: dubgate show <id>

A job with its media metadata and recent event history (GET /api/jobs/:id).`,
  cancel: `Usage: dubgate cancel <id>

Cancels an active job (exit 1 with JOB_NOT_CANCELABLE when it does not apply).`,
  retry: `Usage: dubgate retry <id>

Retries a FAILED or CANCELED job from the beginning (JOB_NOT_RETRYABLE otherwise).`,
  resume: `Usage: dubgate resume <id>

Resumes a job that failed while dubbing, from its last checkpoint (JOB_NOT_RESUMABLE otherwise).`,
  delete: `Usage: dubgate delete <id> [--yes]

Deletes a job, its queue entries and its files. On a terminal it asks first unless --yes (-y).`,
  logs: `Usage: dubgate logs <id> [--after n] [--level l] [--limit n] [--follow]

Prints a job's event log, oldest first.
  --after n        only events with id greater than n
  --level l        debug, info, warn or error
  --limit n        at most n events (default: all)
  --follow         keep printing new events until the job ends`,
  follow: `Usage: dubgate follow <id> [--interval <seconds>]

Follows a job live over Socket.IO (subscribe), and polls GET /api/jobs/:id every few seconds so a
missed event cannot hang it. A progress bar (percent, speed, eta) on a terminal, plain lines
otherwise, JSON lines with --json (events "status", "progress", "state_change", "log", "error",
"notice", and a last "end").
  --interval <s>   poll period in seconds (default 3)
Exit codes: 0 COMPLETE, 1 FAILED, 2 CANCELED (other codes as for every command).`,
  help: `Usage: dubgate help [command]`,
};
