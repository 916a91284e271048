"""Assertions on a finished mailgrab run and the .eml files it stored, for
unittest.TestCase classes that mix them in (tools.Run gives res.describe())."""

import os


class Checks:
    def assertExit(self, res, code):
        self.assertEqual(res.returncode, code,
                         f"expected exit {code}, got {res.returncode}" + res.describe())

    def stored(self, out, res, mailbox="INBOX"):
        """{uid: bytes} of the .eml files in OUTPUT/mailbox."""
        box = os.path.join(out, mailbox)
        self.assertTrue(os.path.isdir(box), f"mailgrab created no {box}" + res.describe())
        got = {}
        for name in os.listdir(box):
            if name.endswith(".eml") and not name.startswith("."):
                stem = name[:-4]
                self.assertTrue(stem.isdigit(), f"unexpected file name {name}" + res.describe())
                with open(os.path.join(box, name), "rb") as f:
                    got[int(stem)] = f.read()
        return got

    def assertAllIdentical(self, out, res, want, mailbox="INBOX"):
        """Exactly the messages of want ({uid: bytes}) are stored, byte for byte."""
        got = self.stored(out, res, mailbox)
        self.assertEqual(sorted(got), sorted(want),
                         f"stored UIDs differ: missing {sorted(set(want) - set(got))[:20]} "
                         f"({len(set(want) - set(got))} in all), "
                         f"extra {sorted(set(got) - set(want))[:20]}" + res.describe())
        bad = [u for u in want if got[u] != want[u]]
        if bad:
            u = bad[0]
            a, b = got[u], want[u]
            k = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
            self.fail(f"{len(bad)} messages differ from the server's BODY[]; first uid {u}: "
                      f"stored {len(a)} bytes, server {len(b)} bytes, first difference at "
                      f"offset {k}: {a[k:k + 40]!r} vs {b[k:k + 40]!r}" + res.describe())

    def assertNoTempFiles(self, out, res):
        left = [n for _, _, files in os.walk(out) for n in files if ".mg-tmp-" in n]
        self.assertEqual(left, [], "temporary files left behind" + res.describe())
