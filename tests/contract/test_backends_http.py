"""Contract tests for :class:`backends.http.JsonHttp` against a real local HTTP server:
statuses and JSON, query strings, forms, headers, no redirects, timeouts, refused
connections and bad URLs as :class:`HttpUnavailable`, shared and owned pools."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
import urllib3
from conftest import LiveServer, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from backends.errors import BackendError, HttpStatusError, HttpUnavailable
from backends.http import JsonHttp


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": sorted(request.query_params.multi_items()),
            "content_type": request.headers.get("content-type"),
            "token": request.headers.get("x-token"),
            "body": body.decode(),
        }
    )


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    return PlainTextResponse("no", code, headers={"Retry-After": "7"})


async def slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params["s"]))
    return JSONResponse({"slept": True})


async def moved(request: Request) -> Response:
    return RedirectResponse("/echo", 302)


async def text(request: Request) -> Response:
    return PlainTextResponse("<html>")


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/status/{code}", status),
        Route("/slow", slow),
        Route("/moved", moved, methods=["GET", "POST"]),
        Route("/text", text),
    ]
)


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(APP) as live:
        yield live


@pytest.fixture
def http(server: LiveServer) -> Iterator[JsonHttp]:
    with JsonHttp(server.url + "/", headers={"X-Token": "t1"}, timeout=2.0) as client:
        yield client


def test_json_body_query_and_default_headers(http: JsonHttp) -> None:
    resp = http.post("/echo", json={"a": 1}, params=[("q", "x y"), ("q", "2")])
    assert resp.status == 200 and resp.ok
    got = resp.json()
    assert got["method"] == "POST" and got["path"] == "/echo"
    assert got["query"] == [["q", "2"], ["q", "x y"]]
    assert got["content_type"] == "application/json" and json.loads(got["body"]) == {"a": 1}
    assert got["token"] == "t1"
    # headers per call win over the defaults
    assert http.get("echo", headers={"X-Token": "t2"}).json()["token"] == "t2"


def test_form_and_raw_content(http: JsonHttp) -> None:
    got = http.put("/echo", form={"query": "up == 1", "time": "1.5"}).json()
    assert got["content_type"] == "application/x-www-form-urlencoded"
    assert got["body"] == "query=up+%3D%3D+1&time=1.5"
    got = http.delete("/echo", content=b"raw", headers={"Content-Type": "text/plain"}).json()
    assert (got["method"], got["body"], got["content_type"]) == ("DELETE", "raw", "text/plain")


def test_an_absolute_url_ignores_the_base(server: LiveServer) -> None:
    with JsonHttp("http://127.0.0.1:1/never") as other:
        assert other.get(f"{server.url}/echo").json()["path"] == "/echo"
    with JsonHttp() as bare:
        assert bare.get(f"{server.url}/echo").status == 200


def test_any_status_is_an_answer_and_raise_for_status_names_it(http: JsonHttp) -> None:
    resp = http.get("/status/503")
    assert (resp.status, resp.ok, resp.text) == (503, False, "no")
    assert resp.headers["retry-after"] == "7"  # case-insensitive
    with pytest.raises(HttpStatusError, match="HTTP 503") as err:
        resp.raise_for_status()
    assert err.value.status == 503 and isinstance(err.value, BackendError)
    assert http.get("/echo").raise_for_status().status == 200


def test_a_body_that_is_not_json_is_a_value_error(http: JsonHttp) -> None:
    with pytest.raises(ValueError):
        http.get("/text").json()


def test_redirects_are_not_followed(http: JsonHttp) -> None:
    resp = http.post("/moved", json={})
    assert resp.status == 302 and resp.headers["location"] == "/echo"


def test_read_false_leaves_the_body_unread(http: JsonHttp) -> None:
    resp = http.post("/echo", json={"a": 1}, read=False)
    assert (resp.status, resp.data) == (200, b"")
    assert http.get("/echo").json()["method"] == "GET"  # the client still works


def test_a_timeout_is_http_unavailable_timed_out(http: JsonHttp) -> None:
    with pytest.raises(HttpUnavailable, match=r"timed out after 0.2s") as err:
        http.get("/slow", params={"s": "2"}, timeout=0.2)
    assert err.value.timed_out and isinstance(err.value, BackendError)
    assert isinstance(err.value.__cause__, urllib3.exceptions.ReadTimeoutError)


def test_a_refused_connection_is_http_unavailable_not_a_timeout() -> None:
    port = free_port()  # nothing listens there
    down = JsonHttp(f"http://user:secret@127.0.0.1:{port}")
    with down, pytest.raises(HttpUnavailable) as err:
        down.get("/echo?token=abc")
    assert not err.value.timed_out
    assert str(err.value) == "no answer: NewConnectionError"  # no URL, password, token


@pytest.mark.parametrize("url", ["http://", "http://127.0.0.1:99999/", "ftp://host/x"])
def test_a_bad_url_is_http_unavailable(url: str) -> None:
    with JsonHttp() as http, pytest.raises(HttpUnavailable) as err:
        http.get(url)
    assert not err.value.timed_out and "://" not in str(err.value)


def test_a_shared_pool_is_used_and_left_open(server: LiveServer) -> None:
    pool = urllib3.PoolManager(maxsize=2)
    with JsonHttp(server.url, pool=pool) as first:
        assert first.get("/echo").status == 200
    assert len(pool.pools) == 1  # the same pool served it, and closing left it alone
    with JsonHttp(server.url, pool=pool) as second:
        assert second.get("/echo").status == 200
    pool.clear()


def test_an_owned_pool_is_cleared_on_close(server: LiveServer) -> None:
    http = JsonHttp(server.url)
    http.get("/echo")
    assert len(http._pool.pools) == 1
    http.close()
    assert len(http._pool.pools) == 0
