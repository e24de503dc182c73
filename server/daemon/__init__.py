"""`infiller daemon`: one long-lived process holding the model and the workspace indexes, serving
llama.cpp's, OpenAI's and Continue's completion requests over HTTP (aiohttp).

- `protocol`: the request/response shapes of each client, as pure functions (parse -> query,
  answer -> JSON); `locate`: which indexed file a request that names none is about;
- `core`: the transport-free part (model worker, admission, indexes, completions);
- `app`: the aiohttp handlers (thin: parse, one core call, format), auth, limits, metrics;
- `client`: how `infiller complete` finds and uses a running daemon.
"""
