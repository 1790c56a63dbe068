// --shutdown-delay: how long a process keeps serving after SIGTERM, with /readyz already
// failing, before it drains. An orchestrator takes the pod out of its Service some time after
// the pod begins to stop; requests routed to it meanwhile must still be served.

/** The default inside a Kubernetes pod: a few seconds cover endpoint propagation. */
const IN_KUBERNETES_S = 5;

/** The delay in seconds: the one given, else 5 in a Kubernetes pod (KUBERNETES_SERVICE_HOST set), else 0. */
export function shutdownDelayOf(given: number | undefined, env: NodeJS.ProcessEnv = process.env): number {
  if (given !== undefined) return given;
  return env.KUBERNETES_SERVICE_HOST ? IN_KUBERNETES_S : 0;
}
