// The front's spans (--otlp-endpoint): one SERVER span per proxied request, from its arrival to
// the end of its response, with events at dispatch (the backend chosen) and at the first byte
// (the response head), and a `dispatch` child span from dispatch to the end. The request goes to
// the backend with a traceparent naming the request's span, so the app's span is its child and
// shares the trace of the client's own traceparent, if it sent one (tracestate goes on as sent).
// Without --otlp-endpoint none of this is loaded, and a request costs one null check.
import type { Span } from '@opentelemetry/api';
import type { Logger } from '../../common/log.js';
import { type OtelApi, parentContext, parseTraceparent, type SpanExport, startSpanExport, traceparentOf } from '../../common/otel.js';
import type { RequestHead } from '../../protocol/connection.js';
import { staticIndex } from '../../protocol/header-table.js';
import type { HttpRequest } from '../http/server.js';
import { channels, type Observed, statusOf } from './observe.js';

/** What begin() needs of an exchange. */
interface Traced {
  readonly req: HttpRequest;
  readonly head: RequestHead;
  readonly started: number;
}

interface Trace {
  span: Span;
  /** performance.now() at the (last) dispatch, 0 before. */
  dispatched: number;
}

const I_TRACEPARENT = staticIndex('traceparent');

/** A performance.now() time as epoch milliseconds: every time of a span on one clock, not on the SDK's per-trace anchors. */
const epoch = (t: number): number => performance.timeOrigin + t;

export class FrontTracing {
  readonly #export: SpanExport;
  readonly #api: OtelApi;
  readonly #traces = new WeakMap<object, Trace>();
  readonly #onDispatch = (m: unknown) => this.#dispatched(m as { exchange?: object; backend: string; attempt: number });
  readonly #onHead = (m: unknown) => this.#firstByte(m as { exchange?: object; status: number });
  /** The observer of finished responses: ends their spans. */
  readonly observe = (r: Observed): void => this.#end(r);

  private constructor(exp: SpanExport) {
    this.#export = exp;
    this.#api = exp.api;
    channels.dispatch.subscribe(this.#onDispatch);
    channels.head.subscribe(this.#onHead);
  }

  static async start(url: string, log: Logger): Promise<FrontTracing> {
    return new FrontTracing(await startSpanExport(url, 'tsgi-front', log));
  }

  /** A proxied request arrived: its span starts (at its arrival), and its head gets the traceparent. */
  begin(ex: Traced): void {
    const req = ex.req;
    const raw = req.rawHeaders;
    let parent: string | undefined;
    let state: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.length === 11 && name.toLowerCase() === 'traceparent') parent ??= raw[i + 1];
      else if (name.length === 10 && name.toLowerCase() === 'tracestate') state = state === undefined ? raw[i + 1] : `${state},${raw[i + 1]}`;
    }
    const api = this.#api;
    const q = req.url.indexOf('?');
    const span = this.#export.tracer.startSpan(req.method, {
      kind: api.SpanKind.SERVER,
      startTime: epoch(ex.started),
      attributes: {
        'http.request.method': req.method,
        'url.path': q === -1 ? req.url : req.url.slice(0, q),
        'network.protocol.version': req.httpVersion,
        'client.address': ex.head.remoteAddr ?? '',
        'tsgi.request_id': req.requestId,
      },
    }, parentContext(api, parseTraceparent(api, parent, state)));
    this.#traces.set(ex, { span, dispatched: 0 });
    setTraceparent(ex.head, traceparentOf(span));
  }

  #dispatched(m: { exchange?: object; backend: string; attempt: number }): void {
    const t = m.exchange === undefined ? undefined : this.#traces.get(m.exchange);
    if (t === undefined) return;
    t.dispatched = performance.now();
    t.span.addEvent('dispatch', { 'tsgi.backend': m.backend, 'tsgi.attempt': m.attempt }, epoch(t.dispatched));
  }

  #firstByte(m: { exchange?: object; status: number }): void {
    const t = m.exchange === undefined ? undefined : this.#traces.get(m.exchange);
    if (t !== undefined) t.span.addEvent('first byte', { 'http.response.status_code': m.status }, epoch(performance.now()));
  }

  #end(r: Observed): void {
    const t = this.#traces.get(r);
    if (t === undefined) return;
    this.#traces.delete(r);
    const api = this.#api;
    const status = statusOf(r);
    const now = epoch(performance.now());
    const span = t.span;
    span.setAttribute('http.response.status_code', status);
    span.setAttribute('tsgi.backend', r.backendName);
    if (status >= 500) span.setStatus({ code: api.SpanStatusCode.ERROR, message: `status ${status}` });
    if (t.dispatched > 0) {
      const child = this.#export.tracer.startSpan('dispatch', {
        kind: api.SpanKind.INTERNAL, startTime: epoch(t.dispatched), attributes: { 'tsgi.backend': r.backendName },
      }, api.trace.setSpan(api.ROOT_CONTEXT, span));
      child.end(now);
    }
    span.end(now);
  }

  /** Sends the spans still batched, and stops listening. */
  async stop(): Promise<void> {
    channels.dispatch.unsubscribe(this.#onDispatch);
    channels.head.unsubscribe(this.#onHead);
    await this.#export.shutdown();
  }
}

/** The head's traceparent becomes `value` (the client's, if any, is replaced: the app's parent is the front's span). */
function setTraceparent(head: RequestHead, value: string): void {
  const block = head.headers!;
  const names = block.names!;
  for (let i = 0; i < names.length; i++) {
    if (names[i] === I_TRACEPARENT) {
      block.values![i] = value;
      return;
    }
  }
  names.push(I_TRACEPARENT);
  block.values!.push(value);
}
