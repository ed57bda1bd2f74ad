"""A small HTTP server for `tracer attach --exact` tests: every GET /item/N answers
`item N` through `render`, whose arguments the trace must hold. It prints READY and
its port, then one line per 100 requests, and nothing else."""
import http.server
import sys


def render(path, served):
    return ("item " + path.rsplit("/", 1)[-1] + "\n").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    served = 0

    def do_GET(self):
        Handler.served += 1
        body = render(self.path, Handler.served)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if Handler.served % 100 == 0:
            print("served", Handler.served, flush=True)

    def log_message(self, format, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print("READY", server.server_address[1], flush=True)
try:
    server.serve_forever(poll_interval=0.05)
except KeyboardInterrupt:
    sys.exit(0)
