// A protocol-1 plugin in JavaScript (Node 18+), with nothing but node:http.
// Upper-cases the "text" argument of tool calls and blocks the word "forbidden".
import http from "node:http";

const token = process.env.MCP_PLUGIN_MW_SERVE_TOKEN;

const server = http.createServer((request, response) => {
  const send = (status, value) => {
    const body = JSON.stringify(value);
    response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    response.end(body);
  };
  if (request.method === "GET" && request.url === "/health") return send(200, { status: "ok" });
  if (request.method !== "POST" || request.url !== "/call") return send(404, { error: { code: "NOT_FOUND", message: request.url } });
  if (token && request.headers.authorization !== `Bearer ${token}`) {
    return send(401, { error: { code: "UNAUTHORIZED", message: "missing or wrong bearer token" } });
  }
  let raw = "";
  request.on("data", (chunk) => (raw += chunk));
  request.on("end", () => {
    const { method, params } = JSON.parse(raw);
    const { payload, context } = params;
    if (method !== "tool_pre_invoke") return send(404, { error: { code: "UNKNOWN_HOOK", message: method } });
    const text = String(payload.args.text ?? "");
    if (text.includes("forbidden")) {
      const violation = { reason: "Denied word", description: "'forbidden' is not allowed", code: "DENIED" };
      return send(200, { result: { continue_processing: false, violation } });
    }
    context.state.calls = (context.state.calls ?? 0) + 1;
    const modified_payload = { ...payload, args: { ...payload.args, text: text.toUpperCase() } };
    send(200, { result: { modified_payload, metadata: { by: "node" } }, context });
  });
});

server.listen(0, "127.0.0.1", () => console.log(`PORT=${server.address().port}`));
