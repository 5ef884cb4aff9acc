/**
 * The sockets of this node by session id and by user id, so a revocation message closes exactly
 * the matching sockets. A socket is registered before its revocation keys are read, so a message
 * that arrives during that read is not missed.
 */
export interface SessionRegistry<S> {
  add(socket: S, sessionId: string, userId: string): void;
  /** Forgets the socket; safe for a socket never added. */
  remove(socket: S): void;
  bySession(sessionId: string): S[];
  byUser(userId: string): S[];
  /** Every registered socket. */
  all(): S[];
  /** Visits every registered socket without copying them. */
  forEach(fn: (socket: S) => void): void;
  readonly size: number;
}

export function createSessionRegistry<S>(): SessionRegistry<S> {
  const sessions = new Map<string, Set<S>>();
  const users = new Map<string, Set<S>>();
  const entries = new Map<S, { sessionId: string; userId: string }>();

  const put = (map: Map<string, Set<S>>, key: string, socket: S) => {
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    set.add(socket);
  };
  const drop = (map: Map<string, Set<S>>, key: string, socket: S) => {
    const set = map.get(key);
    if (!set) return;
    set.delete(socket);
    if (set.size === 0) map.delete(key);
  };

  return {
    add(socket, sessionId, userId) {
      this.remove(socket);
      entries.set(socket, { sessionId, userId });
      put(sessions, sessionId, socket);
      put(users, userId, socket);
    },
    remove(socket) {
      const entry = entries.get(socket);
      if (!entry) return;
      entries.delete(socket);
      drop(sessions, entry.sessionId, socket);
      drop(users, entry.userId, socket);
    },
    bySession: (sessionId) => [...(sessions.get(sessionId) ?? [])],
    byUser: (userId) => [...(users.get(userId) ?? [])],
    all: () => [...entries.keys()],
    forEach: (fn) => {
      for (const socket of entries.keys()) fn(socket);
    },
    get size() {
      return entries.size;
    },
  };
}
