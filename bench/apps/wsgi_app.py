# WSGI apps for uWSGI, the same responses as the tsgi and node apps: pick one with
# `uwsgi --wsgi-file wsgi_app.py --callable hello|download|echo`.
HELLO = b'<h1>Hello, web</h1>'
ONE_MIB = bytes(i % 251 for i in range(1 << 20))


def hello(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/html'), ('Content-Length', str(len(HELLO)))])
    return [HELLO]


def download(environ, start_response):
    start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                              ('Content-Length', str(len(ONE_MIB)))])
    return [ONE_MIB]


def echo(environ, start_response):
    body = environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
    start_response('200 OK', [('Content-Type', environ.get('CONTENT_TYPE') or 'application/octet-stream'),
                              ('Content-Length', str(len(body)))])
    return [body]


application = hello
