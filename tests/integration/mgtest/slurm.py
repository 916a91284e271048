"""A one-node Slurm cluster in a private directory, for tests: munged with a
key of its own, slurmctld and slurmd on free ports, all in the foreground
as children of the test (no systemd), with proctrack/pgid and no cgroups.
Needs root (slurmd runs jobs as their submitting user) and Debian's
slurmctld, slurmd, slurm-client and munge packages.

    with Slurm(workdir) as cluster:
        job = cluster.sbatch(["--array=1-3", script], env)
        states = cluster.wait(job)        # {task id: (state, exit code)}
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

from mgtest.server import free_ports

SBIN = ("/usr/sbin", "/usr/bin")


def find(name):
    for d in SBIN:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


def missing():
    """Why a cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "Slurm's slurmd needs root to start jobs"
    for name in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "sacct", "scontrol"):
        if find(name) is None:
            return f"{name} is not installed (scripts/install-deps installs Slurm and munge)"
    return None


class Slurm:
    def __init__(self, parent):
        self.dir = os.path.join(parent, "slurm")
        self.procs = []
        self.node = socket.gethostname().split(".")[0]

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def env(self, extra=None):
        e = dict(os.environ)
        e["SLURM_CONF"] = self.path("slurm.conf")
        e.update(extra or {})
        return e

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self, timeout=60):
        for d in ("munge", "state", "spool", "log"):
            os.makedirs(self.path(d), mode=0o700, exist_ok=True)
        key = self.path("munge", "munge.key")
        subprocess.run([find("mungekey"), "--create", "--keyfile", key], check=True,
                       capture_output=True)
        os.chmod(key, 0o600)
        self.munge_socket = self.path("munge", "munge.socket")
        self._spawn("munged", [find("munged"), "--foreground", "--force",
                               "--key-file", key, "--socket", self.munge_socket,
                               "--pid-file", self.path("munge", "munged.pid"),
                               "--seed-file", self.path("munge", "munged.seed"),
                               "--log-file", self.path("log", "munged.log")])
        self._wait_for(lambda: os.path.exists(self.munge_socket), timeout, "munged")
        ctl_port, d_port = free_ports("127.0.0.1", "127.0.0.1")
        cpus = os.cpu_count() or 1
        with open("/proc/meminfo") as f:
            mem_mb = int(f.readline().split()[1]) // 1024 * 9 // 10
        with open(self.path("slurm.conf"), "w") as f:
            f.write(f"""ClusterName=mgtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctl_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={self.path('state')}
SlurmdSpoolDir={self.path('spool')}
SlurmctldPidFile={self.path('slurmctld.pid')}
SlurmdPidFile={self.path('slurmd.pid')}
SlurmctldLogFile={self.path('log', 'slurmctld.log')}
SlurmdLogFile={self.path('log', 'slurmd.log')}
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.path('log', 'jobcomp.txt')}
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=3600
KillWait=5
NodeName={self.node} NodeHostname={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
""")
        self._spawn("slurmctld", [find("slurmctld"), "-D", "-i", "-f", self.path("slurm.conf")])
        self._spawn("slurmd", [find("slurmd"), "-D", "-f", self.path("slurm.conf")])
        self._wait_for(self._node_up, timeout, "the Slurm node")

    def _spawn(self, name, argv):
        log = open(self.path("log", name + ".out"), "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             env=self.env(), start_new_session=True)
        log.close()
        self.procs.append((name, p))

    def _node_up(self):
        r = subprocess.run([find("sinfo"), "-h", "-N", "-o", "%T"], env=self.env(),
                           capture_output=True, text=True, timeout=20)
        return r.returncode == 0 and r.stdout.strip() in ("idle", "mixed", "allocated")

    def _wait_for(self, ok, timeout, what):
        deadline = time.monotonic() + timeout
        while not ok():
            for name, p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(f"{name} exited ({p.returncode}):\n" + self.logs())
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not come up in {timeout} s:\n" + self.logs())
            time.sleep(0.2)

    def logs(self):
        out = []
        for name in sorted(os.listdir(self.path("log"))):
            with open(self.path("log", name), errors="replace") as f:
                out.append(f"--- {name} ---\n" + f.read()[-3000:])
        return "\n".join(out)

    def sbatch(self, args, env=None, cwd=None):
        r = subprocess.run([find("sbatch"), "--parsable", *args], env=self.env(env),
                           capture_output=True, text=True, timeout=30, cwd=cwd)
        if r.returncode != 0:
            raise AssertionError(f"sbatch failed: {r.stderr}\n" + self.logs())
        return r.stdout.strip().split(";")[0]

    def tasks(self, job):
        """{task id: (state, exit code)} of a job array, from slurmctld."""
        r = subprocess.run([find("scontrol"), "show", "job", "-o", job], env=self.env(),
                           capture_output=True, text=True, timeout=30)
        got = {}
        for line in r.stdout.splitlines():
            task = re.search(r"\bArrayTaskId=(\d+)\b", line)
            state = re.search(r"\bJobState=(\w+)", line)
            code = re.search(r"\bExitCode=(\d+):(\d+)", line)
            if task and state and code:
                got[int(task.group(1))] = (state.group(1), int(code.group(1)))
        return got

    def wait(self, job, n, timeout=240):
        """The n tasks of job once all have ended."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.tasks(job)
            if len(got) == n and all(s not in ("PENDING", "RUNNING", "CONFIGURING",
                                               "COMPLETING") for s, _ in got.values()):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job} not done in {timeout} s: {got}\n" + self.logs())
            time.sleep(0.5)

    def stop(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs = []
