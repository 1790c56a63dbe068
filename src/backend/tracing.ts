// The backend's spans (--otlp-endpoint): one SERVER span per app call, from the call to the end
// of the response, a child of the span named by the request's traceparent (the front's span, or
// the client's own when no tsgi front is in between), with the status and the request id. Built
// on the gateway's diagnostics channels: without --otlp-endpoint nobody subscribes, and an app
// call costs nothing more.
import type { Span } from '@opentelemetry/api';
import type { Logger } from '../common/log.js';
import { type OtelApi, parentContext, parseTraceparent, type SpanExport, startSpanExport } from '../common/otel.js';
import { appChannels } from './gateway.js';
import { requestIdKey } from './request-id.js';
import type { Environ } from './types.js';

export class ServeTracing {
  readonly #export: SpanExport;
  readonly #api: OtelApi;
  readonly #spans = new WeakMap<object, Span>();
  readonly #onStart = (m: unknown) => this.#start((m as { environ: Environ }).environ);
  readonly #onEnd = (m: unknown) => this.#end(m as { environ: Environ; status: number; aborted: boolean });

  private constructor(exp: SpanExport) {
    this.#export = exp;
    this.#api = exp.api;
    appChannels.start.subscribe(this.#onStart);
    appChannels.end.subscribe(this.#onEnd);
  }

  static async start(url: string, log: Logger): Promise<ServeTracing> {
    return new ServeTracing(await startSpanExport(url, 'tsgi-serve', log));
  }

  #start(environ: Environ): void {
    const api = this.#api;
    const parent = parseTraceparent(api, environ.HTTP_TRACEPARENT as string | undefined, environ.HTTP_TRACESTATE as string | undefined);
    const id = environ[requestIdKey()];
    const span = this.#export.tracer.startSpan('app', {
      kind: api.SpanKind.SERVER,
      attributes: {
        'http.request.method': environ.REQUEST_METHOD,
        'url.path': `${environ.SCRIPT_NAME}${environ.PATH_INFO}`,
        ...(typeof id === 'string' ? { 'tsgi.request_id': id } : {}),
        'process.pid': process.pid,
      },
    }, parentContext(api, parent));
    this.#spans.set(environ, span);
  }

  #end(m: { environ: Environ; status: number; aborted: boolean }): void {
    const span = this.#spans.get(m.environ);
    if (span === undefined) return;
    this.#spans.delete(m.environ);
    if (m.status !== 0) span.setAttribute('http.response.status_code', m.status);
    if (m.status >= 500 || m.status === 0) {
      span.setStatus({ code: this.#api.SpanStatusCode.ERROR, message: m.status === 0 ? (m.aborted ? 'aborted' : 'no response') : `status ${m.status}` });
    }
    span.end();
  }

  /** Sends the spans still batched, and stops listening. */
  async stop(): Promise<void> {
    appChannels.start.unsubscribe(this.#onStart);
    appChannels.end.unsubscribe(this.#onEnd);
    await this.#export.shutdown();
  }
}
