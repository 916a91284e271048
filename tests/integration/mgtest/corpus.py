"""Deterministic test corpus, delivered straight into a Maildir.

Message i of a corpus depends only on (seed, i), so a corpus can be grown later
(add_messages) and rebuilt identically.  Every message is CRLF-only, so the
file size is exactly the size Dovecot serves for BODY[].

The truth that mailgrab's statistics must reproduce is recorded while the
messages are built, never by parsing them back, and written to expected.json:

  total          {"messages": N, "bytes": B}
  sender         From's first addr-spec, lowercased; "(none)" when From is
                 missing or holds no address (empty group)
  sender_domain  the part after "@" of that address; "(none)" likewise
  hour_utc       24 counts, weekday_utc 7 counts (Monday first), from the Date
                 header converted to UTC; a message without a usable Date is
                 counted in date_fallback and attributed by its INTERNALDATE
                 (the file's mtime, set here, taken as UTC)

Two-digit years follow RFC 5322 4.3: 00-49 are 20xx, 50-99 are 19xx.  Named
zones are the RFC 5322 ones (UT GMT EST EDT CST CDT MST MDT PST PDT).
"""

import base64
import datetime as dt
import json
import os
import random

CRLF = b"\r\n"
UTC = dt.timezone.utc

DOMAINS = ["example.com", "example.org", "mail.example.net", "lists.example.test",
           "xn--bcher-kva.example", "corp.example.co.uk", "sub.domain.example",
           "example.de", "example.jp", "example.ru"]
LOCALS = ["alice", "bob", "carol", "dave", "eve", "frank", "john.doe", "jane_smith",
          "noreply", "billing+invoice", "o'brien", "x"]

NAMES = [
    # (text, charset for RFC 2047, encoding)
    ("François Müller", "iso-8859-1", "Q"),
    ("José Núñez", "iso-8859-1", "B"),
    ("Иван Петров", "koi8-r", "B"),
    ("Ольга Смирнова", "koi8-r", "Q"),
    ("山田太郎", "iso-2022-jp", "B"),
    ("Zoë Ødegaard 😀", "utf-8", "B"),
    ("Ærøskøbing Ålborg", "utf-8", "Q"),
]

SUBJECTS = [
    ("Réunion de l'équipe à 10h", "iso-8859-1", "Q"),
    ("Отчёт за квартал", "koi8-r", "B"),
    ("会議の議事録について", "iso-2022-jp", "B"),
    ("Grüße aus Köln – ein längerer Betreff, der über mehrere encoded-words geht 🎉",
     "utf-8", "B"),
    ("Ünïcödé überall", "utf-8", "Q"),
]

ZONES = {"UT": 0, "GMT": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
         "MST": -7, "MDT": -6, "PST": -8, "PDT": -7}
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
          "Nov", "Dec"]

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
         "tempor incididunt ut labore et dolore magna aliqua mailgrab imap fetch "
         "chunk worker maildir header body").split()


def encoded_words(text, charset, enc):
    """RFC 2047 encoded-words for text, each at most 75 characters."""
    out, piece = [], ""
    for ch in text:
        trial = piece + ch
        if len(_ew(trial, charset, enc)) > 75:
            out.append(_ew(piece, charset, enc))
            piece = ch
        else:
            piece = trial
    if piece:
        out.append(_ew(piece, charset, enc))
    return out


def _ew(text, charset, enc):
    raw = text.encode(charset)
    if enc == "B":
        payload = base64.b64encode(raw).decode()
    else:
        payload = "".join(
            "_" if b == 0x20 else
            chr(b) if (0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A)
            else f"={b:02X}" for b in raw)
    return f"=?{charset.upper()}?{enc}?{payload}?="


def fold(name, words):
    """A header line folded between words so no line exceeds ~76 octets."""
    lines, cur = [], name + ":"
    for w in words:
        if len(cur) + 1 + len(w) > 76 and cur != name + ":":
            lines.append(cur)
            cur = " " + w
        else:
            cur += " " + w
    lines.append(cur)
    return CRLF.join(x.encode("utf-8") if isinstance(x, str) else x for x in lines)


class _Builder:
    """Builds message (seed, i) and records its truth."""

    def __init__(self, seed, i, big_size=0):
        self.rng = random.Random(f"mailgrab-corpus/{seed}/{i}")
        self.i = i
        self.seed = seed
        self.big_size = big_size
        self.headers = []  # list of bytes (already folded, no final CRLF)
        self.sender = "(none)"
        self.utc = None  # datetime from Date, if usable
        self.mtime = None
        self.to_count = 0
        self.message_id = ""
        self.attachments = 0  # application/octet-stream parts
        self.attachment_bytes = 0  # their decoded sizes

    def h(self, line):
        self.headers.append(line.encode("utf-8") if isinstance(line, str) else line)

    # -- From ----------------------------------------------------------------

    def addr(self):
        r = self.rng
        local = r.choice(LOCALS)
        domain = r.choice(DOMAINS[:6] if r.random() < 0.7 else DOMAINS)
        return local, domain

    def build_from(self):
        r = self.rng
        local, domain = self.addr()
        a = f"{local}@{domain}"
        style = r.randrange(14)
        name, cs, enc = r.choice(NAMES)
        if style == 0:
            self.h(f"From: {a}")
        elif style == 1:
            self.h(f"From: Plain Person <{a}>")
        elif style == 2:
            self.h(f'From: "Doe, John (Sales)" <{a}>')
        elif style == 3:
            self.h(fold("From", encoded_words(name, cs, enc) + [f"<{a}>"]))
        elif style == 4:
            self.h(f"From: {a} (Comment Person)")
        elif style == 5:
            self.h(f"From: {name} <{a}>")  # raw 8-bit UTF-8 header
        elif style == 6:
            l2, d2 = self.addr()
            self.h(f"From: Project Team: {a}, Other <{l2}@{d2}>;")
        elif style == 7:
            self.h("From: undisclosed-recipients:;")
            return
        elif style == 8:
            return  # no From at all
        elif style == 9:
            mixed = "".join(c.upper() if r.random() < 0.5 else c for c in a)
            self.h(f"From: Mixed Case <{mixed}>")
        elif style == 10:
            self.h(f'From: "Tricky <fake@evil.example>" <{a}>')
        elif style == 11:
            self.h(f"From: A Very Long Display Name That Needs Folding Somewhere\r\n\t<{a}>")
        elif style == 12:
            self.h(f'From: "Escaped \\"Quote\\" Name" <{a}>, second@example.com')
        else:
            self.h(f"From: <{a}>")
        self.sender = a.lower()

    # -- Date ----------------------------------------------------------------

    def build_date(self):
        r = self.rng
        # 1995..2026, whole seconds, always in UTC first
        base = dt.datetime(1995, 1, 1, tzinfo=UTC)
        utc = base + dt.timedelta(seconds=r.randrange(int(32 * 365.25 * 86400)))
        # INTERNALDATE: a while after sending, so a parser that ignores Date is caught
        self.mtime = int(utc.timestamp()) + r.randrange(3600, 40 * 3600)
        style = r.randrange(16)
        if style == 0:
            return  # no Date header
        if style == 1:
            self.h("Date: sometime last week")
            return
        if style == 2:
            self.h("Date: ")
            return
        if style in (3, 4):
            zname = r.choice(sorted(ZONES))
            off = ZONES[zname] * 60
            zone = zname
        elif style == 5:
            off, zone = 0, "-0000"
        else:
            off = r.choice([0, 60, 120, 330, 345, 540, 600, -300, -420, -180, 780, -660, 0])
            zone = f"{'+' if off >= 0 else '-'}{abs(off) // 60:02d}{abs(off) % 60:02d}"
        local = utc + dt.timedelta(minutes=off)
        day = DAYS[local.weekday()]
        mon = MONTHS[local.month - 1]
        if style == 6 and 1950 <= local.year:
            year = f"{local.year % 100:02d}"  # obsolete 2-digit year
        else:
            year = str(local.year)
        hms = f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
        if style == 7:
            # no seconds: truth loses them too (does not change hour/weekday)
            hms = f"{local.hour:02d}:{local.minute:02d}"
        if style == 8:
            text = f"{local.day} {mon} {year} {hms} {zone}"  # no day-of-week
        elif style == 9:
            text = f"{day}, {local.day:02d} {mon} {year} {hms} {zone} ({'PDT' if off == -420 else 'local time'})"
        elif style == 10:
            self.h(f"Date: {day}, {local.day} {mon} {year}\r\n  {hms} {zone}")
            self.utc = utc
            return
        elif style == 11:
            text = f"{day},  {local.day}   {mon} {year}  {hms}   {zone}"
        elif style == 12:
            text = f"(sent) {day}, {local.day} {mon} {year} {hms} {zone}"
        else:
            text = f"{day}, {local.day} {mon} {year} {hms} {zone}"
        self.h("Date: " + text)
        self.utc = utc

    # -- rest ----------------------------------------------------------------

    def build_subject(self):
        r = self.rng
        style = r.randrange(6)
        if style == 0:
            self.h(f"Subject: Message number {self.i}")
        elif style == 1:
            text, cs, enc = r.choice(SUBJECTS)
            self.h(fold("Subject", encoded_words(text, cs, enc)))
        elif style == 2:
            self.h(f"Subject: Raw UTF-8 Betreff – Größe {self.i} ✓")
        elif style == 3:
            words = [r.choice(WORDS) for _ in range(40)]
            self.h(fold("Subject", words))
        elif style == 4:
            text, cs, enc = r.choice(SUBJECTS)
            self.h(fold("Subject", ["Re:", "[list]"] + encoded_words(text, cs, enc) + ["(fwd)"]))
        # style 5: no Subject

    def text(self, lines):
        r = self.rng
        return [" ".join(r.choice(WORDS) for _ in range(r.randrange(3, 14)))
                for _ in range(lines)]

    def base64_lines(self, data):
        enc = base64.b64encode(data)
        return [enc[k:k + 76] for k in range(0, len(enc), 76)]

    def build(self, big=False):
        r = self.rng
        self.build_from()
        two = r.random() < 0.3
        self.h("To: Alice <alice@example.com>" + (",\r\n Bob <bob@example.org>" if two else ""))
        self.to_count = 2 if two else 1
        self.build_date()
        self.build_subject()
        self.message_id = f"<{self.seed}.{self.i}.{r.randrange(10**9)}@corpus.mailgrab.test>"
        self.h(f"Message-ID: {self.message_id}")
        if r.random() < 0.2:
            self.h("X-Folded: first part\r\n\tsecond part\r\n  third part")
        if r.random() < 0.1:
            self.h("X-Long-Header: " + "v" * r.randrange(1000, 3000))
        self.h("MIME-Version: 1.0")
        kind = "mixed-big" if big else r.choice(
            ["plain", "plain", "plain", "html", "alternative", "alternative", "mixed",
             "long-lines", "nul", "8bit"])
        body = []  # list of bytes lines
        boundary = f"=_mg_{self.i}_{r.randrange(10**6)}"
        if kind in ("plain", "long-lines", "nul", "8bit"):
            cs = "utf-8" if kind == "8bit" else "us-ascii"
            self.h(f"Content-Type: text/plain; charset={cs}")
            if kind == "8bit":
                self.h("Content-Transfer-Encoding: 8bit")
            body = [x.encode() for x in self.text(r.randrange(1, 60))]
            if kind == "long-lines":
                body.insert(1, b"L" * r.randrange(2000, 20000))
            if kind == "nul":
                body.insert(1, b"before\x00after\x00\x00 nul bytes")
            if kind == "8bit":
                body.insert(0, "Grüße, Привет, こんにちは".encode())
        elif kind == "html":
            self.h("Content-Type: text/html; charset=utf-8")
            body = [b"<html><body>"] + [f"<p>{t}</p>".encode() for t in self.text(r.randrange(1, 30))] + [b"</body></html>"]
        else:
            sub = "alternative" if kind == "alternative" else "mixed"
            self.h(f'Content-Type: multipart/{sub};\r\n boundary="{boundary}"')
            body.append(b"This is a multi-part message in MIME format.")
            parts = []
            parts.append([b"Content-Type: text/plain; charset=us-ascii", b""] + [x.encode() for x in self.text(r.randrange(1, 20))])
            if kind == "alternative":
                parts.append([b"Content-Type: text/html; charset=us-ascii", b""] + [f"<p>{t}</p>".encode() for t in self.text(5)])
            else:
                n_att = 1 if kind == "mixed-big" else r.randrange(1, 4)
                for a in range(n_att):
                    size = self.big_size if kind == "mixed-big" else r.randrange(100, 60000)
                    data = r.randbytes(size)
                    self.attachments += 1
                    self.attachment_bytes += size
                    name = f"file{a}.bin"
                    parts.append([f'Content-Type: application/octet-stream; name="{name}"'.encode(),
                                  b"Content-Transfer-Encoding: base64",
                                  f'Content-Disposition: attachment; filename="{name}"'.encode(),
                                  b""] + self.base64_lines(data))
            for p in parts:
                body.append(f"--{boundary}".encode())
                body.extend(p)
            body.append(f"--{boundary}--".encode())
        msg = CRLF.join(self.headers) + CRLF + CRLF + CRLF.join(body) + CRLF
        assert b"\r" not in msg.replace(CRLF, b"") and b"\n" not in msg.replace(CRLF, b"")
        return msg

    def truth(self):
        when = self.utc
        fallback = when is None
        if fallback:
            when = dt.datetime.fromtimestamp(self.mtime, UTC)
        return {"sender": self.sender, "hour": when.hour, "weekday": when.weekday(),
                "fallback": fallback,
                # per message, for the per-message table (--messages-csv)
                "utc": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "to_count": self.to_count,
                "message_id": self.message_id, "attachments": self.attachments,
                "attachment_bytes": self.attachment_bytes}


def empty_expected():
    return {"total": {"messages": 0, "bytes": 0}, "sender": {}, "sender_domain": {},
            "hour_utc": [0] * 24, "weekday_utc": [0] * 7, "date_fallback": 0}


def _account(exp, size, t):
    exp["total"]["messages"] += 1
    exp["total"]["bytes"] += size
    s = t["sender"]
    exp["sender"][s] = exp["sender"].get(s, 0) + 1
    d = s.split("@", 1)[1] if "@" in s else "(none)"
    exp["sender_domain"][d] = exp["sender_domain"].get(d, 0) + 1
    exp["hour_utc"][t["hour"]] += 1
    exp["weekday_utc"][t["weekday"]] += 1
    exp["date_fallback"] += int(t["fallback"])


def build_message(seed, i, big=False, big_size=3 << 20):
    """(bytes, mtime, truth) of message i."""
    b = _Builder(seed, i, big_size)
    msg = b.build(big)
    return msg, b.mtime, b.truth()


def deliver(maildir, start, count, seed=1, big_indexes=(), big_size=3 << 20,
            expected=None, subdir="cur", chown=None):
    """Writes messages start..start+count-1 into maildir/subdir; returns expected."""
    exp = expected or empty_expected()
    dest = os.path.join(maildir, subdir)
    os.makedirs(dest, exist_ok=True)
    for i in range(start, start + count):
        msg, mtime, t = build_message(seed, i, i in big_indexes, big_size)
        name = f"{mtime}.M{i}P{seed}.mgtest,S={len(msg)},W={len(msg)}"
        if subdir == "cur":
            name += ":2,"
        path = os.path.join(dest, name)
        with open(path, "wb") as f:
            f.write(msg)
        os.utime(path, (mtime, mtime))
        if chown:
            chown(path)
        _account(exp, len(msg), t)
    return exp


def write_expected(path, exp):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(exp, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def read_expected(path):
    with open(path) as f:
        return json.load(f)


def _chowner(server):
    if server is None or os.geteuid() != 0:
        return None
    return lambda p: os.lchown(p, server.uid, server.gid)


def generate(maildir, n, expected_path, seed=1, big=2, big_size=3 << 20, server=None):
    """A fresh corpus of n messages, `big` of them with one big_size attachment.

    server: the Dovecot whose mail user must own the files (when running as root).
    """
    rng = random.Random(f"mailgrab-corpus/{seed}/big")
    big_indexes = set(rng.sample(range(n), min(big, n))) if n else set()
    exp = deliver(maildir, 0, n, seed, big_indexes, big_size, chown=_chowner(server))
    write_expected(expected_path, exp)
    return exp


def add_messages(maildir, k, expected_path, seed=1, server=None):
    """Adds k new messages (delivered to new/, as a fresh arrival would be)
    continuing the numbering; updates expected_path; returns it."""
    exp = read_expected(expected_path)
    start = exp["total"]["messages"]
    deliver(maildir, start, k, seed, expected=exp, subdir="new", chown=_chowner(server))
    write_expected(expected_path, exp)
    return exp
