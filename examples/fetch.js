// A fetch-style app (the shape Hono, Workers, Deno and Bun export): no change needed to run it.
export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (request.method === 'POST') {
      const body = await request.text();
      return Response.json({ path: url.pathname, received: body.length });
    }
    return new Response(`hello from fetch at ${url.pathname}\n`, { headers: { 'content-type': 'text/plain' } });
  },
};
