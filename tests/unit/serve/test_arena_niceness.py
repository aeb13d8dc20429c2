"""The live arena's processes lower their own CPU share (``lower_priority``): every thread's niceness."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_every_thread_is_lowered_and_new_threads_inherit_it():
    code = textwrap.dedent("""
        import json, os, threading
        from pathlib import Path
        from titan_ray.serve.arena_service import lower_priority

        def nices():
            return sorted({os.getpriority(os.PRIO_PROCESS, int(t.name)) for t in Path("/proc/self/task").iterdir()})

        target = max(os.getpriority(os.PRIO_PROCESS, 0), 17)
        stop = threading.Event()
        running = threading.Thread(target=stop.wait)  # started before: Linux keeps a niceness per thread
        running.start()
        before = nices()
        now = lower_priority(target)
        later = []
        started = threading.Thread(target=lambda: later.append(os.getpriority(os.PRIO_PROCESS, 0)))
        started.start()
        started.join()
        print(json.dumps({"target": target, "before": before, "now": now, "threads": nices(), "later": later,
                          "again": lower_priority(3)}))
        stop.set()
    """)
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    target = out["target"]
    assert out["now"] == target and out["threads"] == [target] and out["later"] == [target], out
    assert out["again"] == target, "it never lowers a niceness (that takes privileges)"
