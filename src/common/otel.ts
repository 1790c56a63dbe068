// --otlp-endpoint: the OpenTelemetry JS SDK, loaded only when spans are exported (nothing of it
// is imported otherwise), with a batch processor posting OTLP/HTTP JSON to the endpoint; and the
// W3C trace-context header (traceparent) read and written by hand, without the SDK's propagator.
import type { Context, Span, SpanContext, Tracer } from '@opentelemetry/api';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { Logger } from './log.js';
import { packageVersion } from './admin-server.js';

export type OtelApi = typeof import('@opentelemetry/api');

export interface SpanExport {
  readonly api: OtelApi;
  readonly tracer: Tracer;
  /** Sends what is still batched, and stops. */
  shutdown(): Promise<void>;
}

/** How long spans wait in the batch before they go: short, so that a trace shows up while you look. */
const EXPORT_DELAY_MS = 1000;

/** Starts exporting spans of `service` (tsgi-front, tsgi-serve) to `url`. */
export async function startSpanExport(url: string, service: string, log: Logger): Promise<SpanExport> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    parsed = new URL('invalid:');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    const { ConfigError } = await import('../protocol/errors.js');
    throw new ConfigError(`--otlp-endpoint ${JSON.stringify(url)} is not an http:// or https:// URL (an OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces)`);
  }
  const api = await import('@opentelemetry/api');
  const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
  const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  const inner = new OTLPTraceExporter({ url });
  let failing = false;
  // The exporter's own failures go to the OpenTelemetry diag logger, silent by default: say it here.
  const exporter: SpanExporter = {
    shutdown: () => inner.shutdown(),
    forceFlush: () => inner.forceFlush(),
    export: (spans, done) => inner.export(spans, (result) => {
    if (result.code !== 0) {
      const why = `spans not exported to --otlp-endpoint ${url}: ${result.error?.message ?? 'failed'}`;
      if (!failing) log.warn(`${why}; further failures are logged at debug level until an export succeeds`);
      else log.debug(why);
      failing = true;
    } else if (failing) {
      failing = false;
      log.info(`spans exported to --otlp-endpoint ${url} again`);
    }
    done(result);
    }),
  };
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': service, 'service.version': packageVersion(), 'process.pid': process.pid }),
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: EXPORT_DELAY_MS })],
  });
  log.info(`exporting spans as ${service} to ${url} (OTLP/HTTP)`);
  return { api, tracer: provider.getTracer('tsgi', packageVersion()), shutdown: () => provider.shutdown() };
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$/;

/** The span context a traceparent (and tracestate) names, or null when it is missing or invalid (W3C Trace Context 3.2). */
export function parseTraceparent(api: OtelApi, value: string | undefined, state: string | undefined): SpanContext | null {
  if (value === undefined) return null;
  const m = TRACEPARENT.exec(value.trim());
  if (m === null || m[1] === 'ff' || (m[1] === '00' && value.trim().length !== 55)) return null;
  if (/^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return null;
  return {
    traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16) & 1, isRemote: true,
    ...(state !== undefined && state !== '' ? { traceState: api.createTraceState(state) } : {}),
  };
}

/** The context of a span started under `parent` (the root one if null). */
export function parentContext(api: OtelApi, parent: SpanContext | null): Context {
  return parent === null ? api.ROOT_CONTEXT : api.trace.setSpanContext(api.ROOT_CONTEXT, parent);
}

/** The traceparent that makes `span` the parent of what the request causes next. */
export function traceparentOf(span: Span): string {
  const c = span.spanContext();
  return `00-${c.traceId}-${c.spanId}-${(c.traceFlags & 1) === 1 ? '01' : '00'}`;
}
