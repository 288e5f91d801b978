"""A client's first contact that fails says what is wrong and the fix: nothing listening, the
other protocol's port. Real sockets (a bare gRPC server, a plain HTTP/1.1 server)."""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
from concurrent import futures

import grpc
import pytest

from hpi_triton import InferError, ServiceUnavailableError
from hpi_triton.client import Client


@pytest.fixture(scope="module")
def grpc_port():
    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_port():
    server = socketserver.TCPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_nothing_listening(protocol):
    port = _free_port()
    with pytest.raises(ServiceUnavailableError) as refused:
        Client(f"127.0.0.1:{port}", protocol).metadata("OCR")
    message = str(refused.value)
    assert f"no server answers at 127.0.0.1:{port} ({protocol}): connection refused" in message
    assert "hpi-triton serve" in message and "--url" in message


def test_http_on_the_grpc_port(grpc_port):
    with pytest.raises(InferError, match="does not speak HTTP: this looks like its GRPC port. "
                                         "Use --protocol grpc"):
        Client(f"127.0.0.1:{grpc_port}", "http").metadata("OCR")


def test_grpc_on_the_http_port(http_port):
    with pytest.raises(InferError, match="does not speak GRPC: this looks like its HTTP port. "
                                         "Use --protocol http"):
        Client(f"127.0.0.1:{http_port}", "grpc").metadata("OCR")


def test_async_client_names_a_refused_connection():
    import asyncio

    from hpi_triton import AsyncClient

    port = _free_port()

    async def first_contact():
        async with AsyncClient(f"127.0.0.1:{port}") as client:
            await client.metadata("OCR")

    with pytest.raises(ServiceUnavailableError, match="connection refused. Is `hpi-triton "
                                                      "serve` running there"):
        asyncio.run(first_contact())


def test_free_ports_are_distinct():
    from hpi_triton.server import free_ports

    for _ in range(50):
        ports = free_ports(4)
        assert len(set(ports)) == 4 and all(1024 <= p < 65536 for p in ports)
