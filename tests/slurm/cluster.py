"""A real one-node SLURM cluster for tests: munged, slurmctld and slurmd from Debian's packages,
configured in a temporary directory, started here and stopped by PID (see ../shared/ENV.md)."""
import os
import pathlib
import random
import shutil
import socket
import subprocess
import tempfile
import time


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.procs = []
        self.env = dict(os.environ)

    def start(self):
        for tool in ["slurmctld", "slurmd", "munged", "sbatch"]:
            if not shutil.which(tool):
                raise RuntimeError(f"{tool} not found: scripts/install-deps installs slurm-wlm and munge")
        d = self.dir
        for sub in ["state", "spool"]:
            (d / sub).mkdir(parents=True, exist_ok=True)
        self._start_munge()
        host = socket.gethostname().split(".")[0]
        probe = subprocess.run(["slurmd", "-C"], capture_output=True, text=True).stdout
        fields = dict(item.split("=", 1) for item in probe.split() if "=" in item)
        cpus, memory = fields.get("CPUs", "2"), fields.get("RealMemory", "1000")
        ctld_port, d_port = _free_port(), _free_port()
        conf = d / "slurm.conf"
        conf.write_text(f"""ClusterName=eomlabtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerParameters=defer_batch
InactiveLimit=0
KillWait=10
MinJobAge=300
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
""")
        self.env["SLURM_CONF"] = str(conf)
        self._spawn(["slurmctld", "-D", "-f", str(conf)], "slurmctld.out")
        self._spawn(["slurmd", "-D", "-f", str(conf)], "slurmd.out")
        deadline = time.time() + 30
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True).stdout
            if out.strip() in ("idle", "mix", "alloc"):
                return self
            time.sleep(0.2)
        raise RuntimeError("SLURM did not come up:\n" + self.logs())

    def _start_munge(self):
        # The munge user must reach its key: not under a root-only directory (like pytest's tmp).
        d = pathlib.Path(tempfile.mkdtemp(prefix="eomlab-munge-"))
        self.munge_dir = d
        key = d / "munge.key"
        shutil.chown(d, "munge", "munge")
        if not key.exists():
            key.write_bytes(random.randbytes(1024))
        shutil.chown(key, "munge", "munge")
        os.chmod(key, 0o400)
        os.chmod(d, 0o700)
        self.socket = d / "munge.socket"
        self.env["MUNGE_SOCKET"] = str(self.socket)  # not read by slurm; kept for debugging
        # munged refuses to run as root with a key owned by munge: run it as munge.
        run_dir = pathlib.Path("/run/munge")
        run_dir.mkdir(exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        proc = subprocess.Popen(["runuser", "-u", "munge", "--", "munged", "-F", "--key-file", str(key),
                                 "--pid-file", str(d / "munged.pid"), "--log-file", str(d / "munged.log"),
                                 "--seed-file", str(d / "munged.seed"), "--force"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        deadline = time.time() + 10
        while time.time() < deadline and not pathlib.Path("/run/munge/munge.socket.2").exists():
            time.sleep(0.05)

    def _spawn(self, cmd, log):
        out = open(self.dir / log, "w")
        proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)

    def logs(self):
        text = ""
        for name in ["slurmctld.log", "slurmd.log", "slurmctld.out", "slurmd.out"]:
            p = self.dir / name
            if p.exists():
                text += f"--- {name}\n" + p.read_text()[-3000:]
        return text

    def sbatch(self, args, cwd, timeout=600):
        return subprocess.run(["sbatch", "--wait", *map(str, args)], env=self.env, cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)

    def stop(self):
        """Stops every daemon this cluster started, by PID: TERM, then KILL after 5 s."""
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if getattr(self, "munge_dir", None):
            shutil.rmtree(self.munge_dir, ignore_errors=True)
