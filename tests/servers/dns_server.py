"""A real DNS server on 127.0.0.1 (UDP), answering from a zone the test writes.

Built on dnspython's own message parsing and rendering (``dns.message.from_wire`` /
``make_response`` / ``to_wire``), so the resolver under test talks real DNS to it. Records are
``(name, type) → [text]`` in presentation format (``"v=spf1 include:sendgrid.net -all"`` for
TXT, ``"10.0.0.5"`` for A, ``"s1.domainkey.u1.wl1.sendgrid.net."`` for CNAME). A name with no
records at all answers NXDOMAIN; a known name without the asked type answers NOERROR with an
empty answer (NODATA); a CNAME is followed within the zone, as an authoritative server does.

Faults: :meth:`DnsServer.stall` makes a name go unanswered (the resolver times out), which
is what an unreachable or broken nameserver looks like.

Use as a context manager; ``server.address`` is ``127.0.0.1:PORT`` for ``TIDINGS_DNS_NAMESERVER``.
"""

from __future__ import annotations

import socket
import threading
from typing import Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60


class DnsServer:
    def __init__(self, records: dict[tuple[str, str], list[str]] | None = None) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], list[str]] = {}
        self._stalled: set[dns.name.Name] = set()
        self.queries: list[tuple[str, str]] = []
        for (name, kind), values in (records or {}).items():
            self.add(name, kind, *values)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- zone ----------------------------------------------------------------------------------------

    def add(self, name: str, kind: str, *values: str) -> None:
        key = (dns.name.from_text(name), dns.rdatatype.from_text(kind))
        with self._lock:
            self._records.setdefault(key, []).extend(values)

    def stall(self, name: str) -> None:
        """Never answer queries for ``name``."""
        with self._lock:
            self._stalled.add(dns.name.from_text(name))

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._serve, name="DnsServer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        host, port = self._socket.getsockname()
        return f"{host}:{port}"

    # -- serving -------------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except dns.exception.DNSException:
                continue
            answer = self._answer(query)
            if answer is not None:
                self._socket.sendto(answer.to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            with self._lock:
                self.queries.append((question.name.to_text(), dns.rdatatype.to_text(question.rdtype)))
                if question.name in self._stalled:
                    return None
            name = question.name
            for _ in range(8):  # follow CNAMEs inside the zone
                cname = self._lookup(name, dns.rdatatype.CNAME)
                if not cname or question.rdtype == dns.rdatatype.CNAME:
                    break
                response.answer.append(self._rrset(name, dns.rdatatype.CNAME, cname))
                name = dns.name.from_text(cname[0])
            values = self._lookup(name, question.rdtype)
            if values:
                response.answer.append(self._rrset(name, question.rdtype, values))
            elif not response.answer and not self._known(name):
                response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    def _lookup(self, name: dns.name.Name, kind: dns.rdatatype.RdataType) -> list[str]:
        with self._lock:
            return list(self._records.get((name, kind), []))

    def _known(self, name: dns.name.Name) -> bool:
        with self._lock:
            return any(known == name or known.is_subdomain(name) for known, _ in self._records)

    @staticmethod
    def _rrset(name: dns.name.Name, kind: dns.rdatatype.RdataType, values: list[str]) -> dns.rrset.RRset:
        if kind == dns.rdatatype.TXT:
            values = [_quoted(value) for value in values]
        return dns.rrset.from_text_list(name, TTL, dns.rdataclass.IN, kind, values)


def _quoted(text: str) -> str:
    """A TXT value in presentation format, split in 255-byte strings as DNS requires."""
    chunks = [text[start : start + 255] for start in range(0, len(text), 255)] or [""]
    return " ".join('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks)


__all__ = ["DnsServer"]
