"""The release module's interface: it speaks the proxy-wasm ABI 0.2.1 directly (src/filter/abi.rs),
so it exports exactly the callbacks the filter implements — Envoy then never crosses into the VM
for a request or response body, trailers, queues or gRPC — and imports only proxy-wasm host calls
and WASI. Skipped without the release .wasm."""

from artifacts_support import require_wasm

# What Envoy may call, and what the filter calls: checked both ways, so a new export or import is
# a reviewed change.
EXPORTS = {
    "memory", "_initialize", "proxy_abi_version_0_2_1", "proxy_on_memory_allocate",
    "proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure", "proxy_on_tick",
    "proxy_on_http_call_response", "proxy_on_request_headers", "proxy_on_response_headers",
    "proxy_on_log", "proxy_on_done", "proxy_on_delete",
}


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def _name(data: bytes, at: int) -> tuple[str, int]:
    size, at = _leb128(data, at)
    return data[at:at + size].decode(), at + size


def _sections(data: bytes):
    assert data[:8] == b"\0asm\x01\0\0\0", "not a wasm module (version 1)"
    at = 8
    while at < len(data):
        section, at = data[at], at + 1
        size, at = _leb128(data, at)
        yield section, data[at:at + size]
        at += size


def _interface(data: bytes) -> tuple[set[str], set[tuple[str, str]]]:
    exports, imports = set(), set()
    for section, body in _sections(data):
        if section == 2:  # imports: module, name, kind + its description
            count, at = _leb128(body, 0)
            for _ in range(count):
                module, at = _name(body, at)
                name, at = _name(body, at)
                kind, at = body[at], at + 1
                assert kind == 0, f"import {module}.{name} is not a function"
                _, at = _leb128(body, at)
                imports.add((module, name))
        elif section == 7:  # exports: name, kind, index
            count, at = _leb128(body, 0)
            for _ in range(count):
                name, at = _name(body, at)
                at += 1
                _, at = _leb128(body, at)
                exports.add(name)
    return exports, imports


def test_exports_exactly_the_callbacks_the_filter_implements():
    exports, _ = _interface(require_wasm().read_bytes())
    assert exports == EXPORTS


def test_imports_only_proxy_wasm_host_calls_and_wasi():
    _, imports = _interface(require_wasm().read_bytes())
    assert imports, "no imports read"
    for module, name in imports:
        assert (module == "env" and name.startswith("proxy_")) or module == "wasi_snapshot_preview1", (module, name)
    # The body callbacks' host calls are not needed either: no body is ever read or written.
    assert not {n for _, n in imports} & {"proxy_get_buffer_status", "proxy_set_buffer_bytes", "proxy_continue_stream"}
