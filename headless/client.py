"""Run an API prompt on a running ComfyUI server (``--server URL``), using only the standard library.

The client talks to the one base URL it is given and nothing else: no proxies from the
environment, no redirects followed. It uses ComfyUI's HTTP API (0.3.64):

- ``GET /object_info`` for the node definitions (to convert UI workflows and check links);
- ``POST /prompt`` with ``{"prompt", "client_id", "extra_data"}``; HTTP 400 carries ComfyUI's
  validation errors, which become a ``WorkflowError``;
- progress over the websocket ``/ws?clientId=...`` when the ``websocket-client`` package is
  importable, else polling ``GET /history/<prompt_id>``;
- ``GET /view?filename=&subfolder=&type=output`` to download each saved file;
- ``POST /interrupt`` (and removal from the queue) on Ctrl-C.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ExecutionInterrupted, Problem, ServerError, WorkflowError

log = logging.getLogger(__name__)

EventCallback = Callable[[str, dict], None]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise ServerError(f"{req.full_url} redirected to {newurl}; the client only talks to the URL it was given.")


class ComfyClient:
    """Minimal HTTP client for one ComfyUI server.

    Args:
        base_url: ``http://host:port`` (a path prefix such as ``/comfy`` is kept).
        timeout: seconds for each HTTP request.
    """

    def __init__(self, base_url: str, *, timeout: float = 30.0):
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ServerError("--server needs an http:// or https:// URL such as http://127.0.0.1:8188, "
                              f"got {base_url!r}.")
        if parts.query or parts.fragment:
            raise ServerError(f"--server URL {base_url!r} must not have a query or fragment.")
        self.base_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    # -- plumbing ---------------------------------------------------------------------------------

    def url(self, path: str, **query: Any) -> str:
        """Absolute URL of ``path`` (which starts with ``/``) on this server."""
        q = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        return self.base_url + path + (f"?{q}" if q else "")

    def ws_url(self, client_id: str) -> str:
        parts = urllib.parse.urlsplit(self.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/ws",
                                        urllib.parse.urlencode({"clientId": client_id}), ""))

    def _request(self, method: str, path: str, body: Any = None, **query: Any) -> bytes:
        url = self.url(path, **query)
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data is not None else {})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            exc.body = exc.read()  # keep it for callers that interpret error bodies
            raise
        except urllib.error.URLError as exc:
            raise ServerError(f"cannot reach ComfyUI at {self.base_url}: {exc.reason}. Is it running, and is the "
                              "URL right?") from None
        except (TimeoutError, ConnectionError) as exc:
            raise ServerError(f"{method} {url} failed: {exc}") from None

    def _json(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        try:
            raw = self._request(method, path, body, **query)
        except urllib.error.HTTPError as exc:
            raise ServerError(f"{method} {self.url(path, **query)} answered HTTP {exc.code}: "
                              f"{exc.body[:300].decode('utf-8', 'replace')}") from None
        try:
            return json.loads(raw) if raw else None
        except json.JSONDecodeError:
            raise ServerError(f"{method} {self.url(path, **query)} did not answer JSON; "
                              "is this a ComfyUI server?") from None

    # -- API --------------------------------------------------------------------------------------

    def object_info(self) -> dict:
        info = self._json("GET", "/object_info")
        if not isinstance(info, dict):
            raise ServerError(f"{self.url('/object_info')} did not answer a node list; is this a ComfyUI server?")
        return info

    def queue_prompt(self, prompt: Mapping, client_id: str, extra_data: Mapping | None = None) -> str:
        """Submit ``prompt``; returns its prompt id.

        Raises:
            WorkflowError: the server rejected the prompt (its validation errors, one per problem).
        """
        body = {"prompt": prompt, "client_id": client_id, "extra_data": dict(extra_data or {})}
        try:
            raw = self._request("POST", "/prompt", body)
        except urllib.error.HTTPError as exc:
            if exc.code == 400:
                raise WorkflowError(server_validation_problems(exc.body, prompt)) from None
            raise ServerError(f"POST {self.url('/prompt')} answered HTTP {exc.code}: "
                              f"{exc.body[:300].decode('utf-8', 'replace')}") from None
        answer = json.loads(raw or b"{}")
        if "prompt_id" not in answer:
            raise ServerError(f"POST {self.url('/prompt')} gave no prompt_id: {json.dumps(answer)[:300]}")
        return str(answer["prompt_id"])

    def history(self, prompt_id: str) -> dict | None:
        """The history entry of ``prompt_id`` once it has finished, else None."""
        answer = self._json("GET", f"/history/{urllib.parse.quote(prompt_id, safe='')}")
        return (answer or {}).get(prompt_id)

    def view(self, filename: str, subfolder: str, type_: str) -> bytes:
        try:
            return self._request("GET", "/view", filename=filename, subfolder=subfolder, type=type_)
        except urllib.error.HTTPError as exc:
            raise ServerError(f"downloading {filename!r} failed: HTTP {exc.code}") from None

    def interrupt(self, prompt_id: str) -> None:
        """Stop ``prompt_id`` if it runs, and take it off the queue if it waits (best effort)."""
        for path, body in (("/interrupt", {"prompt_id": prompt_id}), ("/queue", {"delete": [prompt_id]})):
            try:
                self._request("POST", path, body)
            except (urllib.error.HTTPError, ServerError) as exc:
                log.warning("POST %s failed while interrupting: %s", path, exc)


def server_validation_problems(body: bytes, prompt: Mapping) -> list[Problem]:
    """ComfyUI's HTTP 400 answer to ``/prompt`` as ``Problem``s (one per node error)."""
    try:
        answer = json.loads(body or b"{}")
    except json.JSONDecodeError:
        return [Problem("server_rejected", f"the server rejected the prompt: {body[:300].decode('utf-8', 'replace')}")]
    problems = []
    for nid, info in (answer.get("node_errors") or {}).items():
        entry = prompt.get(nid) or {}
        title = (entry.get("_meta") or {}).get("title") or info.get("class_type")
        for err in info.get("errors") or []:
            detail = f": {err['details']}" if err.get("details") else ""
            problems.append(Problem(err.get("type", "server_rejected"), f"{err.get('message', 'rejected')}{detail}",
                                    str(nid), title, info.get("class_type")))
    if not problems:
        err = answer.get("error") or {}
        if isinstance(err, str):
            err = {"message": err}
        detail = f": {err['details']}" if err.get("details") else ""
        problems.append(Problem(err.get("type", "server_rejected"),
                                f"{err.get('message', 'the server rejected the prompt')}{detail}"))
    return problems


def handle_ws_message(message: Mapping, prompt_id: str) -> tuple[str | None, dict, bool]:
    """Interpret one websocket JSON message for ``prompt_id``.

    Returns ``(event, data, done)``: the event to report (None to ignore the message), its data,
    and whether the prompt has finished (success, error or interruption).
    """
    kind = message.get("type")
    data = message.get("data") or {}
    if not isinstance(data, Mapping) or data.get("prompt_id") not in (None, prompt_id):
        return None, {}, False
    if kind == "executing":
        if data.get("node") is None:
            return None, {}, data.get("prompt_id") == prompt_id
        return "executing", dict(data), False
    if kind in ("execution_success", "execution_error", "execution_interrupted"):
        return kind, dict(data), data.get("prompt_id") == prompt_id
    if kind in ("execution_start", "execution_cached", "progress", "executed"):
        return kind, dict(data), False
    return None, {}, False


@dataclass
class ServerRunResult:
    prompt_id: str
    outputs: dict = field(default_factory=dict)        # the history entry's outputs (node id -> ui)
    files: list[str] = field(default_factory=list)     # local paths of the downloaded files
    seconds: float = 0.0


def run_on_server(client: ComfyClient, prompt: Mapping, *, output_dir: str, extra_data: Mapping | None = None,
                  use_websocket: bool | None = None, timeout: float | None = None, poll_interval: float = 0.5,
                  on_event: EventCallback | None = None) -> ServerRunResult:
    """Queue ``prompt`` on the server, wait for it, and download its saved files into ``output_dir``.

    Args:
        use_websocket: True requires ``websocket-client``; None uses it when importable; False polls.
        timeout: give up waiting after this many seconds (None: wait as long as it takes).

    Raises:
        WorkflowError: the server rejected the prompt.
        ServerError: unreachable server, a node failed there, or the wait timed out.
        ExecutionInterrupted: interrupted (Ctrl-C here, or on the server).
    """
    emit = on_event or (lambda name, data: None)
    client_id = uuid.uuid4().hex
    deadline = None if timeout is None else time.monotonic() + timeout
    ws = _open_websocket(client, client_id, use_websocket)
    start = time.perf_counter()
    prompt_id = None
    try:
        prompt_id = client.queue_prompt(prompt, client_id, extra_data)
        emit("queued", {"prompt_id": prompt_id})
        if ws is not None:
            _follow_websocket(ws, prompt_id, emit, deadline)
        entry = _wait_for_history(client, prompt_id, deadline, poll_interval)
    except KeyboardInterrupt:
        if prompt_id is not None:
            client.interrupt(prompt_id)
        raise ExecutionInterrupted() from None
    finally:
        if ws is not None:
            try:
                ws.close()
            except Exception:  # closing a broken socket can fail; nothing to do about it
                log.debug("websocket close failed", exc_info=True)
    _raise_for_status(entry, prompt)
    result = ServerRunResult(prompt_id, dict(entry.get("outputs") or {}), seconds=time.perf_counter() - start)
    result.files = download_outputs(client, result.outputs, output_dir)
    return result


def _open_websocket(client: ComfyClient, client_id: str, use_websocket: bool | None):
    if use_websocket is False:
        return None
    try:
        import websocket  # the websocket-client package
    except ImportError:
        if use_websocket:
            raise ServerError("websocket progress needs the websocket-client package "
                              "(pip install websocket-client).") from None
        log.info("websocket-client is not installed; following the run by polling /history.")
        return None
    try:
        host = urllib.parse.urlsplit(client.base_url).hostname
        ws = websocket.create_connection(client.ws_url(client_id), timeout=client.timeout, http_no_proxy=[host])
        ws.settimeout(1.0)
        return ws
    except Exception as exc:  # any failure here only costs live progress; say so and poll instead
        log.warning("cannot open %s (%s); following the run by polling /history instead.",
                    client.ws_url(client_id), exc)
        return None


def _follow_websocket(ws, prompt_id: str, emit: EventCallback, deadline: float | None) -> None:
    import websocket

    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise ServerError(f"prompt {prompt_id} did not finish in time.")
        try:
            raw = ws.recv()
        except websocket.WebSocketTimeoutException:
            continue
        except websocket.WebSocketConnectionClosedException:
            log.warning("the websocket closed; following the run by polling /history.")
            return
        if not isinstance(raw, str):
            continue  # binary messages are preview images
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            continue
        event, data, done = handle_ws_message(message, prompt_id)
        if event is not None:
            emit(event, data)
        if done:
            return


def _wait_for_history(client: ComfyClient, prompt_id: str, deadline: float | None, poll_interval: float) -> dict:
    """Poll ``/history/<id>``: ComfyUI adds the entry only when the prompt has finished."""
    while True:
        entry = client.history(prompt_id)
        if entry is not None:
            return entry
        if deadline is not None and time.monotonic() > deadline:
            raise ServerError(f"prompt {prompt_id} did not finish in time.")
        time.sleep(poll_interval)


def _raise_for_status(entry: Mapping, prompt: Mapping) -> None:
    status = entry.get("status") or {}
    if status.get("status_str", "success") == "success":
        return
    for event, data in status.get("messages") or []:
        if event == "execution_interrupted":
            nid = str(data.get("node_id"))
            raise ExecutionInterrupted(nid, ((prompt.get(nid) or {}).get("_meta") or {}).get("title")
                                       or data.get("node_type"))
        if event == "execution_error":
            nid = str(data.get("node_id"))
            title = ((prompt.get(nid) or {}).get("_meta") or {}).get("title") or data.get("node_type")
            raise ServerError(f"node {nid} ({title}) failed on the server: {data.get('exception_type', 'error')}: "
                              f"{data.get('exception_message', '').strip()}")
    raise ServerError(f"the run ended with status {status.get('status_str')!r}.")


def _safe_destination(output_dir: str, subfolder: str, filename: str) -> str:
    parts = [p for p in (subfolder or "").replace("\\", "/").split("/") if p] + [filename]
    if any(p in ("..", ".") or os.path.isabs(p) or ":" in p for p in parts) or not filename:
        raise ServerError(f"the server reported an unsafe file name {subfolder!r}/{filename!r}; not downloading it.")
    path = os.path.join(output_dir, *parts)
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.exists(path):
        path = f"{stem}_{n}{ext}"
        n += 1
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def download_outputs(client: ComfyClient, outputs: Mapping, output_dir: str) -> list[str]:
    """Download every ``type == "output"`` file listed in a history entry's outputs; never overwrites."""
    saved = []
    for node_outputs in outputs.values():
        for items in (node_outputs or {}).values():
            for item in items if isinstance(items, list) else []:
                if not (isinstance(item, Mapping) and item.get("type") == "output"
                        and isinstance(item.get("filename"), str)):
                    continue
                dest = _safe_destination(output_dir, item.get("subfolder") or "", item["filename"])
                data = client.view(item["filename"], item.get("subfolder") or "", "output")
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=".download-", dir=os.path.dirname(dest))
                try:  # atomic: a failed write leaves no half file under the output name
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    os.chmod(tmp, 0o666 & ~_umask())
                    os.replace(tmp, dest)
                except BaseException:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                    raise
                saved.append(dest)
    return saved
