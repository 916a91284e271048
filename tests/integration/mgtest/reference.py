"""The byte-identity reference: the server's own copy of every message.

One imaplib IMAP4_SSL connection verified with the test CA fetches
`UID FETCH 1:* (UID BODY.PEEK[])` (PEEK: nothing is marked \\Seen, so the
Maildir is left untouched) and returns {uid: bytes}.
"""

import contextlib
import imaplib
import re
import ssl

_UID = re.compile(rb"\bUID (\d+)")


def login(server, user, password=None):
    """A logged-in imaplib session to server's IMAPS port, verified with its CA."""
    ctx = ssl.create_default_context(cafile=server.ca_file)
    imap = imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=ctx)
    imap.login(user, password if password is not None else server.password(user))
    return imap


def ok(result, what):
    """The data of an imaplib (type, data) result; AssertionError unless OK."""
    typ, data = result
    if typ != "OK":
        raise AssertionError(f"{what}: {typ} {data}")
    return data


@contextlib.contextmanager
def _examined(server, user, password, mailbox):
    """A verified session with mailbox open read-only; yields its EXISTS."""
    ctx = ssl.create_default_context(cafile=server.ca_file)
    imap = imaplib.IMAP4_SSL(server.host, server.imaps_port, ssl_context=ctx)
    try:
        imap.login(user, password if password is not None else server.password(user))
        typ, data = imap.select(mailbox, readonly=True)
        if typ != "OK":
            raise RuntimeError(f"SELECT {mailbox}: {data}")
        yield imap, int(data[0])
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def fetch_all(server, user="alice", password=None, mailbox="INBOX"):
    """{uid: BODY[] bytes} of every message in mailbox."""
    with _examined(server, user, password, mailbox) as (imap, exists):
        if exists == 0:
            return {}
        typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
        if typ != "OK":
            raise RuntimeError(f"UID FETCH: {data}")
        out = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            m = _UID.search(item[0])
            if not m:
                raise RuntimeError(f"FETCH response without UID: {item[0][:200]!r}")
            out[int(m.group(1))] = item[1]
        return out


_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


def internaldates(server, user="alice", password=None, mailbox="INBOX"):
    """{uid: INTERNALDATE as POSIX seconds} of every message in mailbox."""
    import datetime

    with _examined(server, user, password, mailbox) as (imap, exists):
        if exists == 0:
            return {}
        typ, data = imap.uid("FETCH", "1:*", "(UID INTERNALDATE)")
        out = {}
        for line in data:
            uid, when = _UID.search(line), _INTERNALDATE.search(line)
            if not uid or not when:
                raise RuntimeError(f"unexpected FETCH response {line[:200]!r}")
            t = datetime.datetime.strptime(when.group(1).decode().strip(),
                                           "%d-%b-%Y %H:%M:%S %z")
            out[int(uid.group(1))] = int(t.timestamp())
        return out
