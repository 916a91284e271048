#!/usr/bin/env python3
"""mailgrab against hostile and broken servers (mgtest/scripted.py).

Every case checks: the documented exit code and a clear line naming the
problem (or correct handling), healthy messages stored whole beside a bad
one, nothing written outside OUTPUT, peak RSS of the mailgrab process under
RSS_BOUND_MB (mailgrab(1): "tens of MB whatever the server sends") and the
run finishing within a bounded time.
"""

import os
import shutil
import tempfile
import unittest
import zlib

from mgtest import tools
from mgtest.scripted import CLOSE, DATE, Scripted, message
from mgtest.server import make_pki

RSS_BOUND_MB = 64  # documented in README.md (Security defaults) and mailgrab(1)
TIME = "/usr/bin/time"  # GNU time (Debian package time, scripts/install-deps)
EXIT_OK, EXIT_PARTIAL, EXIT_CONNECT, EXIT_MAILBOX, EXIT_PROTOCOL = 0, 1, 3, 6, 8

workdir = None
sanitized = False  # an ASan/TSan build: its shadow memory and quarantine are not mailgrab's
peaks = {}  # test: (peak RSS MB, seconds), printed at the end
pki = None
password_file = None


def setUpModule():
    global workdir, pki, password_file, sanitized
    with open(tools.binary("MAILGRAB"), "rb") as f:
        image = f.read()
    sanitized = b"__asan_init" in image or b"__tsan_init" in image
    if not os.access(TIME, os.X_OK):
        raise AssertionError(f"{TIME} (GNU time) is missing: run scripts/install-deps")
    workdir = tempfile.mkdtemp(prefix="mgtest-hostile-")
    pki = os.path.join(workdir, "pki")
    make_pki(pki)
    password_file = tools.write_secret(workdir, "secret")


def tearDownModule():
    if peaks:
        print("\npeak RSS of mailgrab per case (bound %d MB):" % RSS_BOUND_MB)
        for name, (mb, sec) in sorted(peaks.items()):
            print(f"  {mb:6.1f} MB {sec:6.1f} s  {name}")
    if workdir and not os.environ.get("MG_KEEP_TMP"):
        shutil.rmtree(workdir, ignore_errors=True)


def inbox(n=6, size=300):
    return {"INBOX": {uid: message(uid, size) for uid in range(1, n + 1)}}


def run_measured(argv, timeout):
    """Run argv under GNU time: .maxrss_mb is mailgrab's own peak RSS (a
    child's ru_maxrss from Python would carry Python's, inherited at fork)."""
    fd, rss_file = tempfile.mkstemp(prefix="rss-", dir=workdir)
    os.close(fd)
    res = tools.run([TIME, "-f", "%M", "-o", rss_file, *argv], timeout=timeout)
    res.argv = argv
    with open(rss_file) as f:
        text = f.read().split()
    os.unlink(rss_file)
    res.maxrss_mb = int(text[-1]) / 1024 if text and text[-1].isdigit() else float("inf")
    return res


class Base(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.top = tempfile.mkdtemp(prefix="case-", dir=workdir)
        self.out = os.path.join(self.top, "out")

    def grab(self, srv, *extra, timeout=60, fmt="eml"):
        argv = [tools.binary("MAILGRAB"), "--server", "127.0.0.1", "--port", str(srv.port),
                "--user", "alice", "--cafile", os.path.join(pki, "ca.pem"),
                "--password-file", password_file, "--output", self.out, "--timeout", "3",
                "--format", fmt, *extra]
        res = run_measured(argv, timeout)
        peaks[self.id().split(".", 1)[1]] = (res.maxrss_mb, res.seconds)
        self.assertRss(res)
        self.assertLess(res.seconds, timeout, res.describe())
        self.assertOutsideUntouched(res)
        return res

    def assertRss(self, res):
        if not sanitized:
            self.assertLess(res.maxrss_mb, RSS_BOUND_MB,
                            f"peak RSS {res.maxrss_mb:.1f} MB" + res.describe())

    def assertOutsideUntouched(self, res):
        """Nothing but OUTPUT in the case directory: nothing escaped it."""
        others = sorted(set(os.listdir(self.top)) - {"out"})
        self.assertEqual(others, [], res.describe())

    def assertExit(self, res, code):
        self.assertEqual(res.returncode, code,
                         f"expected exit {code}, got {res.returncode}" + res.describe())

    def assertOneLine(self, res, *words):
        """One stderr line holds every word."""
        lines = [ln for ln in res.stderr.splitlines() if all(w in ln for w in words)]
        self.assertTrue(lines, f"no stderr line with {words}" + res.describe())

    def stored(self, box="INBOX"):
        """{uid: bytes} of the .eml files in OUTPUT/box."""
        d = os.path.join(self.out, box)
        got = {}
        for name in os.listdir(d) if os.path.isdir(d) else []:
            if name.endswith(".eml"):
                with open(os.path.join(d, name), "rb") as f:
                    got[int(name[:-4])] = f.read()
        return got

    def assertStored(self, boxes, uids, res, box="INBOX"):
        want = {u: boxes[box][u] for u in uids}
        got = self.stored(box)
        self.assertEqual(sorted(got), sorted(want), res.describe())
        for u in want:
            self.assertEqual(got[u], want[u], f"UID {u} differs" + res.describe())


class TestHealthy(Base):
    def test_scripted_server_is_served_whole(self):
        boxes = inbox(8)
        with Scripted(pki, boxes) as srv:
            res = self.grab(srv, "--chunks", "2")
        self.assertExit(res, EXIT_OK)
        self.assertStored(boxes, range(1, 9), res)


def pinned(uid, make):
    """A message hook: make(session, seq, default) for uid, the default for the rest."""
    return lambda s, seq, u, default: make(s, seq, default) if u == uid else None


def endless(head, piece=b"x" * 65536, total=None):
    """head, then piece after piece: for ever, or about total bytes."""
    yield head
    sent = 0
    while total is None or sent < total:
        yield piece
        sent += len(piece)


class TestBadMessages(Base):
    """One broken message costs itself: its neighbours in the same FETCH are
    stored, it is not, the run exits 1 with a line naming its UID."""

    def isolated(self, make, bad=3, n=6, extra=()):
        boxes = inbox(n)
        with Scripted(pki, boxes, hooks={"message": pinned(bad, make)}) as srv:
            res = self.grab(srv, "--chunks", "1", *extra)
        self.assertExit(res, EXIT_PARTIAL)
        self.assertStored(boxes, [u for u in range(1, n + 1) if u != bad], res)
        self.assertOneLine(res, f"UID {bad}")
        return res

    def test_body_nil(self):
        res = self.isolated(lambda s, seq, d: b"* %d FETCH (UID 3 RFC822.SIZE 300 INTERNALDATE %s "
                            b"FLAGS () BODY[] NIL)\r\n" % (seq, DATE))
        self.assertOneLine(res, "UID 3", "NIL")

    def test_body_shorter_than_size(self):
        res = self.isolated(lambda s, seq, d: s.default_message(seq, 3, size=350))
        self.assertOneLine(res, "UID 3", "RFC822.SIZE")

    def test_body_longer_than_size(self):
        res = self.isolated(lambda s, seq, d: s.default_message(seq, 3, size=250))
        self.assertOneLine(res, "UID 3", "RFC822.SIZE")

    def test_internaldate_garbage(self):
        self.isolated(lambda s, seq, d: s.default_message(seq, 3, date=b'"31-Foo-99 garbage"'))

    def test_literal_shorter_than_sent(self):
        def lie(s, seq, d):
            body = s.msgs()[3]
            return (b"* %d FETCH (UID 3 RFC822.SIZE %d FLAGS () BODY[] {%d}\r\n"
                    % (seq, len(body), len(body) - 40) + body + b")\r\n")
        self.isolated(lie)

    def test_literal_longer_than_sent(self):
        # The rest of the answer is swallowed as body, then the server waits:
        # each attempt costs one --timeout (3 s).
        def lie(s, seq, d):
            body = s.msgs()[3]
            return (b"* %d FETCH (UID 3 RFC822.SIZE %d FLAGS () BODY[] {%d}\r\n"
                    % (seq, len(body), len(body) + 100000) + body + b")\r\n")
        self.isolated(lie)

    def test_endless_line_in_a_message(self):
        res = self.isolated(lambda s, seq, d: endless(b"* %d FETCH (UID 3 FLAGS (" % seq,
                                                      piece=b"\\Seen " * 10000))
        self.assertOneLine(res, "UID 3", "longer than")

    def test_every_message_broken(self):
        # A server breaking on message after message: each costs its own
        # attempts (3), one line each, and nothing else; the run ends.
        boxes = inbox(12)
        with Scripted(pki, boxes, hooks={"message": lambda s, seq, uid, d: s.default_message(
                seq, uid, date=b'"garbage"')}) as srv:
            res = self.grab(srv, "--chunks", "1")
            fetches = srv.body_fetches()
        self.assertExit(res, EXIT_PARTIAL)
        for uid in range(1, 13):
            self.assertOneLine(res, f"UID {uid} not stored", "cannot parse")
        self.assertLessEqual(fetches, 3 * 12, res.describe())
        self.assertEqual(self.stored(), {}, res.describe())

    def test_unasked_zero_and_repeated_uids(self):
        boxes = inbox(6)

        def extra(s, seq, uid, default):
            if uid != 2:
                return None
            return [default, s.default_message(seq, 2, body=message(77)),
                    s.default_message(seq, 2, body=b"")[:0]
                    + b"* 9 FETCH (UID 0 RFC822.SIZE 5 FLAGS () BODY[] {5}\r\nhello)\r\n"
                    + b"* 9 FETCH (UID 99 RFC822.SIZE 5 FLAGS () BODY[] {5}\r\nhello)\r\n"]
        with Scripted(pki, boxes, hooks={"message": extra}) as srv:
            res = self.grab(srv, "--chunks", "1")
        self.assertExit(res, EXIT_OK)
        self.assertStored(boxes, range(1, 7), res)


class TestListing(Base):
    def test_listed_uids_zero_and_repeated(self):
        boxes = inbox(5)

        def listing(s, tag, uids):
            d = s.default_listing(tag, uids)
            return b"* 1 FETCH (UID 0 RFC822.SIZE 10)\r\n" + d[:d.rindex(tag + b" OK")] + d
        with Scripted(pki, boxes, hooks={"listing": listing}) as srv:
            res = self.grab(srv, "--chunks", "1")
            fetched = [c for _, c in srv.commands if b"BODY.PEEK[]" in c]
        self.assertExit(res, EXIT_OK)
        self.assertStored(boxes, range(1, 6), res)
        self.assertEqual([c.split(b" ")[3] for c in fetched], [b"1:5"], fetched)

    def test_listed_but_never_sent(self):
        # 100,000 UIDs listed, none sent: not exit 0, and not 100,000 lines.
        boxes = {"INBOX": {}}
        fake = range(1, 100001)

        def listing(s, tag, uids):
            return (b"".join(b"* %d FETCH (UID %d RFC822.SIZE 100)\r\n" % (u, u) for u in fake)
                    + tag + b" OK done\r\n")
        with Scripted(pki, boxes, hooks={
                "listing": listing,
                "examine": lambda s, tag, box: s.default_examine(tag, exists=len(fake))}) as srv:
            res = self.grab(srv, "--chunks", "2", timeout=90)
        self.assertExit(res, EXIT_PARTIAL)
        self.assertLess(len(res.stderr.splitlines()), 6, res.describe())
        self.assertOneLine(res, "100000 messages", "never sent")

    def test_listed_then_expunged(self):
        # Listed, gone from the next listing: really expunged, exit 0.
        boxes = inbox(4)
        calls = []

        def listing(s, tag, uids):
            calls.append(tag)
            if len(calls) == 1:
                return (b"* 5 FETCH (UID 7 RFC822.SIZE 100)\r\n"
                        + s.default_listing(tag, uids))
            return None
        with Scripted(pki, boxes, hooks={"listing": listing}) as srv:
            res = self.grab(srv)
        self.assertExit(res, EXIT_OK)
        self.assertStored(boxes, range(1, 5), res)
        self.assertOneLine(res, "1 message", "disappeared")

    def test_listing_flood(self):
        # Far more FETCH lines than EXISTS announced: refused, memory bounded.
        boxes = inbox(3)
        line = b"* 1 FETCH (UID 1 RFC822.SIZE 100)\r\n"
        with Scripted(pki, boxes, hooks={
                "listing": lambda s, tag, uids: endless(b"", piece=line * 2000,
                                                        total=len(line) * 3000000)}) as srv:
            res = self.grab(srv)
        self.assertExit(res, EXIT_PROTOCOL)
        self.assertOneLine(res, "EXISTS")

    def test_literal_in_listing(self):
        boxes = inbox(3)
        with Scripted(pki, boxes, hooks={
                "listing": lambda s, tag, uids: endless(
                    b"* 1 FETCH (UID 1 RFC822.SIZE 100 BODY[] {160000000}\r\n",
                    total=160000000)}) as srv:
            res = self.grab(srv)
        self.assertExit(res, EXIT_PROTOCOL)
        self.assertOneLine(res, "literal")


class TestExamine(Base):
    def test_no_exists(self):
        boxes = inbox(4)

        def examine(s, tag, box):
            return s.default_examine(tag).replace(b"* 4 EXISTS\r\n", b"")
        with Scripted(pki, boxes, hooks={"examine": examine}) as srv:
            res = self.grab(srv)
        self.assertExit(res, EXIT_OK)
        self.assertStored(boxes, range(1, 5), res)
        self.assertOneLine(res, "INBOX", "EXISTS")

    def test_no_uidvalidity(self):
        for uv in (None, 0):
            with self.subTest(uidvalidity=uv):
                self.setUp()
                boxes = inbox(4)
                with Scripted(pki, boxes, uidvalidity=uv) as srv:
                    res = self.grab(srv)
                self.assertExit(res, EXIT_MAILBOX)
                self.assertOneLine(res, "INBOX", "UIDVALIDITY")
                self.assertEqual(self.stored(), {}, res.describe())

    def test_no_uidvalidity_costs_only_its_mailbox(self):
        boxes = {"INBOX": {1: message(1)}, "Broken": {1: message(2)}, "Work": {1: message(3)}}

        def examine(s, tag, box):
            return s.default_examine(tag, uidvalidity=0) if box == "Broken" else None
        with Scripted(pki, boxes, hooks={"examine": examine}) as srv:
            res = self.grab(srv, "--all-mailboxes")
        self.assertExit(res, EXIT_PARTIAL)  # a listed mailbox that cannot be opened
        self.assertOneLine(res, "Broken", "UIDVALIDITY")
        self.assertStored(boxes, [1], res, box="INBOX")
        self.assertStored(boxes, [1], res, box="Work")


class TestFlags(Base):
    def test_hostile_keywords_in_maildir_names(self):
        boxes = inbox(3)
        flags = b"\\Seen $Junk ../../x :2,T /etc/passwd \\Flagged \\Custom NonJunk"
        with Scripted(pki, boxes, hooks={
                "message": lambda s, seq, uid, d: s.default_message(seq, uid, flags=flags)}) as srv:
            res = self.grab(srv, fmt="maildir")
        self.assertExit(res, EXIT_OK)
        names = os.listdir(os.path.join(self.out, "INBOX", "cur"))
        self.assertEqual(len(names), 3, res.describe())
        for name in names:
            self.assertTrue(name.endswith(":2,FS"), name)
            self.assertNotIn("/", name)


class TestNames(Base):
    def test_names_that_try_to_escape(self):
        names = ["INBOX", "..", "../../escape", "/abs/olute", "INBOX/../../up", ".mailgrab.lock",
                 "a/./b", "~", "-rf"]
        boxes = {name: {1: message(i), 2: message(i + 100)} for i, name in enumerate(names)}
        with Scripted(pki, boxes) as srv:
            res = self.grab(srv, "--all-mailboxes")
        self.assertExit(res, EXIT_OK)
        stored = []
        for root, _, files in os.walk(self.out):
            stored += [f for f in files if f.endswith(".eml")]
        self.assertEqual(len(stored), 2 * len(names), res.describe())

    def test_names_that_collide_with_files(self):
        outside = os.path.join(self.top, "out", "..", "elsewhere")
        os.makedirs(self.out)
        os.makedirs(os.path.join(self.top, "elsewhere"))
        with open(os.path.join(self.out, "Work"), "w") as f:
            f.write("a file\n")
        os.symlink(outside, os.path.join(self.out, "Links"))
        boxes = {name: {1: message(i)} for i, name in enumerate(["INBOX", "Work", "Links"])}
        with Scripted(pki, boxes) as srv:
            argv_extra = ("--all-mailboxes",)
            res = run_measured([tools.binary("MAILGRAB"), "--server", "127.0.0.1", "--port",
                                str(srv.port), "--user", "alice", "--cafile",
                                os.path.join(pki, "ca.pem"), "--password-file", password_file,
                                "--output", self.out, "--timeout", "3", *argv_extra], 60)
        self.assertRss(res)
        self.assertEqual(os.listdir(os.path.join(self.top, "elsewhere")), [], res.describe())
        self.assertNotEqual(res.returncode, EXIT_OK, res.describe())
        self.assertStored(boxes, [1], res)


class TestHuge(Base):
    """Huge or endless lines, huge literals, floods: a clear error, bounded memory."""

    def refused(self, hooks, *extra, words=()):
        with Scripted(pki, inbox(3), hooks=hooks) as srv:
            res = self.grab(srv, *extra)
        self.assertExit(res, EXIT_PROTOCOL)
        self.assertEqual(len(res.stderr.splitlines()), 1, res.describe())
        if words:
            self.assertOneLine(res, *words)
        return res

    def test_huge_greeting(self):
        self.refused({"greeting": lambda s: endless(b"* OK ", total=100 << 20)},
                     words=("longer than",))

    def test_endless_line_answering_examine(self):
        self.refused({"examine": lambda s, tag, box: endless(b"* OK [ALERT] ")},
                     words=("longer than",))

    def test_huge_literal_outside_a_body(self):
        self.refused({"list": lambda s, tag: [b'* LIST () "/" {4000000000}\r\n', b"x" * 65536]},
                     "--all-mailboxes", words=("literal",))

    def test_flood_of_untagged_responses(self):
        self.refused({"examine": lambda s, tag, box: endless(b"", piece=b"* OK flood\r\n" * 5000,
                                                             total=12 * 1000000)},
                     words=("untagged",))

    def test_too_many_mailboxes(self):
        line = b'* LIST () "/" "Box%05d"\r\n'
        self.refused({"list": lambda s, tag: [b"".join(line % i for i in range(12000)),
                                              tag + b" OK done\r\n"]},
                     "--all-mailboxes", words=("more than 10000 mailboxes",))

    def test_flood_of_mailboxes(self):
        line = b'* LIST () "/" "Box%07d"\r\n'
        self.refused({"list": lambda s, tag: (b"".join(line % (i * 1000 + j) for j in range(1000))
                                              for i in range(1000))},
                     "--all-mailboxes", words=("untagged",))


class TestCompress(Base):
    """A server that offers COMPRESS=DEFLATE after login and then refuses it
    is used uncompressed; one that agrees and then sends bytes that are not
    deflate ends each session with a line that says so (exit 8)."""

    offer = {"login": lambda s, tag: tag + b" OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] in\r\n"}

    def test_refused_compress_goes_on_plain(self):
        for answer in (b" NO not now\r\n", b" BAD unknown command\r\n"):
            boxes = inbox(5)
            hooks = dict(self.offer, compress=lambda s, tag, a=answer: tag + a)
            with Scripted(pki, boxes, hooks=hooks) as srv:
                res = self.grab(srv, "--chunks", "2")
            self.assertExit(res, EXIT_OK)
            self.assertStored(boxes, range(1, 6), res)
            asked = [c for _, c in srv.commands if c.endswith(b"COMPRESS DEFLATE")]
            self.assertGreaterEqual(len(asked), 1, res.describe())
            shutil.rmtree(self.out)

    def test_no_compress_does_not_ask(self):
        boxes = inbox(3)
        with Scripted(pki, boxes, hooks=self.offer) as srv:
            res = self.grab(srv, "--no-compress")
        self.assertExit(res, EXIT_OK)
        self.assertFalse([c for _, c in srv.commands if b"COMPRESS" in c], res.describe())

    def test_agreed_then_not_deflate(self):
        hooks = dict(self.offer, compress=lambda s, tag: [
            tag + b" OK begin compression\r\n* OK this is not deflate\r\n"])
        with Scripted(pki, inbox(3), hooks=hooks) as srv:
            res = self.grab(srv, timeout=40)
        self.assertExit(res, EXIT_PROTOCOL)
        self.assertOneLine(res, "do not inflate")
        self.assertEqual(self.stored(), {}, res.describe())


    def test_inflated_flood_meets_the_bounds(self):
        """Agreed, then an endless line that deflates to almost nothing (a
        16 MB line in 16 KB, sent with the OK): the response bound applies
        to the inflated text, so the session ends (exit 8) and RSS stays
        flat."""
        def bomb(s, tag):
            z = zlib.compressobj(9, zlib.DEFLATED, -15)
            yield tag + b" OK begin compression\r\n" + z.compress(b"* OK ") + z.flush(
                zlib.Z_SYNC_FLUSH)
            for _ in range(16):
                yield z.compress(b"x" * (1 << 20)) + z.flush(zlib.Z_SYNC_FLUSH)
        with Scripted(pki, inbox(3), hooks=dict(self.offer, compress=bomb)) as srv:
            res = self.grab(srv, timeout=40)
        self.assertExit(res, EXIT_PROTOCOL)
        self.assertOneLine(res, "response longer than")


class TestBye(Base):
    """A BYE at every stage: one clear line, the right exit code, soon."""

    def bye(self, hooks, code, *extra):
        with Scripted(pki, inbox(3), hooks=hooks) as srv:
            res = self.grab(srv, *extra, timeout=40)
        self.assertExit(res, code)
        self.assertEqual(len(res.stderr.splitlines()), 1, res.describe())
        return res

    def test_bye_greeting(self):
        res = self.bye({"greeting": lambda s: [b"* BYE too busy\r\n", CLOSE]}, EXIT_CONNECT)
        self.assertOneLine(res, "refused the session", "too busy")

    def test_bye_login(self):
        res = self.bye({"login": lambda s, tag: [b"* BYE closing\r\n", CLOSE]}, EXIT_PROTOCOL)
        self.assertOneLine(res, "ended the session while logging in", "closing")

    def test_bye_list(self):
        res = self.bye({"list": lambda s, tag: [b"* BYE closing\r\n", CLOSE]}, EXIT_PROTOCOL,
                       "--all-mailboxes")
        self.assertOneLine(res, "ended the session while listing mailboxes", "closing")

    def test_bye_examine(self):
        res = self.bye({"examine": lambda s, tag, box: [b"* BYE closing\r\n", CLOSE]},
                       EXIT_PROTOCOL)
        self.assertOneLine(res, "ended the session while opening the mailbox", "closing")

    def test_bye_listing(self):
        res = self.bye({"listing": lambda s, tag, uids: [b"* BYE closing\r\n", CLOSE]},
                       EXIT_PROTOCOL)
        self.assertOneLine(res, "ended the session while listing messages", "closing")

    def test_bye_mid_fetch_once(self):
        # Between two messages of the first session's FETCH, as Gmail does.
        boxes = inbox(6)

        def once(s, seq, uid, default):
            return [b"* BYE session expired\r\n", CLOSE] if uid == 3 and s.number == 1 else None
        with Scripted(pki, boxes, hooks={"message": once}) as srv:
            res = self.grab(srv, "--chunks", "1")
        self.assertExit(res, EXIT_OK)
        self.assertStored(boxes, range(1, 7), res)

    def test_bye_mid_fetch_always(self):
        boxes = inbox(6)
        with Scripted(pki, boxes, hooks={"message": pinned(3, lambda s, seq, d: [
                b"* BYE going away\r\n", CLOSE])}) as srv:
            res = self.grab(srv, "--chunks", "1", timeout=40)
        self.assertExit(res, EXIT_PARTIAL)
        self.assertOneLine(res, "INBOX", "could not be downloaded")
        self.assertNotIn(3, self.stored(), res.describe())


if __name__ == "__main__":
    unittest.main()
