import { io, type Socket } from 'socket.io-client';
import type { ClientToServerEvents, ServerToClientEvents, SubscriptionAck } from './types.js';

export type ConnState = 'connecting' | 'live' | 'reconnecting' | 'offline';
type Handlers = Partial<ServerToClientEvents>;
const MAX_IDS = 100;

/**
 * One Socket.IO connection on this origin (`/socket.io/`), authenticated by the session cookie.
 * It remembers the jobs it is subscribed to and subscribes again after every reconnect, then
 * tells listeners so they catch up from the REST API (Pub/Sub is at most once).
 */
export class Live {
  private socket: Socket<ServerToClientEvents, ClientToServerEvents> | null = null;
  private readonly subscribed = new Set<string>();
  private readonly listeners = new Set<Handlers>();
  private readonly reconnectListeners = new Set<() => void>();
  private everConnected = false;
  onState: (s: ConnState) => void = () => {};

  start(): void {
    if (this.socket) return;
    this.everConnected = false;
    this.onState('connecting');
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io({
      path: '/socket.io/',
      transports: ['websocket', 'polling'],
      withCredentials: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
    });
    this.socket = socket;
    socket.on('connect', () => {
      this.onState('live');
      const again = this.everConnected;
      this.everConnected = true;
      void this.sendSubscribe([...this.subscribed]);
      if (again) for (const fn of this.reconnectListeners) fn();
    });
    socket.on('disconnect', (reason) => {
      // The server ended it on purpose (logout, expiry): reconnecting is up to us.
      if (reason === 'io server disconnect') {
        this.onState('reconnecting');
        setTimeout(() => socket.connect(), 1000);
      } else if (reason === 'io client disconnect') this.onState('offline');
      else this.onState('reconnecting');
    });
    socket.on('connect_error', () => this.onState('reconnecting'));
    for (const name of ['progress', 'state_change', 'log', 'notification', 'job_added', 'job_removed', 'error'] as const) {
      socket.on(name, ((e: unknown) => {
        for (const l of this.listeners) (l[name] as ((x: unknown) => void) | undefined)?.(e);
      }) as never);
    }
  }

  stop(): void {
    this.socket?.disconnect();
    this.socket = null;
    this.subscribed.clear();
    this.onState('offline');
  }

  /** Add listeners; returns a function that removes them. */
  on(h: Handlers): () => void {
    this.listeners.add(h);
    return () => this.listeners.delete(h);
  }
  onReconnect(fn: () => void): () => void {
    this.reconnectListeners.add(fn);
    return () => this.reconnectListeners.delete(fn);
  }

  /** Make the subscribed set exactly `ids` (plus `keep`). */
  async setSubscriptions(ids: Iterable<string>): Promise<void> {
    const want = new Set(ids);
    const drop = [...this.subscribed].filter((id) => !want.has(id));
    const add = [...want].filter((id) => !this.subscribed.has(id));
    for (const id of drop) this.subscribed.delete(id);
    for (const id of add) this.subscribed.add(id);
    await Promise.all([this.send('unsubscribe', drop), this.sendSubscribe(add)]);
  }

  async subscribe(ids: string[]): Promise<void> {
    const add = ids.filter((id) => !this.subscribed.has(id));
    for (const id of add) this.subscribed.add(id);
    await this.sendSubscribe(add);
  }

  private sendSubscribe(ids: string[]): Promise<void> {
    return this.send('subscribe', ids);
  }

  private async send(event: 'subscribe' | 'unsubscribe', ids: string[]): Promise<void> {
    const socket = this.socket;
    if (!socket || !socket.connected || ids.length === 0) return;
    for (let i = 0; i < ids.length; i += MAX_IDS) {
      const chunk = ids.slice(i, i + MAX_IDS);
      try {
        const ack: SubscriptionAck = await socket.timeout(5000).emitWithAck(event, chunk);
        // A job that is gone (or not ours) is refused: forget it.
        if (event === 'subscribe') for (const r of ack.results) if (!r.accepted) this.subscribed.delete(r.jobId);
      } catch {
        // No ack in time: the next reconnect subscribes again.
      }
    }
  }
}
