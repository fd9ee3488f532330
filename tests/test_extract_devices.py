"""repbench.extract.devices: GPU slots (flock) with fake devices, the lock directory."""

import signal
import subprocess
import sys

from conftest import ROOT

from repbench.extract.devices import GpuSlot, acquire_gpu_slot, gpu_lock_dir


def test_gpu_slot_allocator_with_fake_devices(tmp_path):
    devices = ["GPU-aaaa", "GPU-bbbb"]
    a = acquire_gpu_slot(tmp_path, devices, wait=False)
    b = acquire_gpu_slot(tmp_path, devices, wait=False)
    assert (a.index, b.index) == (0, 1)
    assert acquire_gpu_slot(tmp_path, devices, wait=False) is None  # both taken
    a.release()
    c = acquire_gpu_slot(tmp_path, devices, wait=False)
    assert isinstance(c, GpuSlot) and c.index == 0
    b.release(), c.release()
    # a killed holder frees its GPU: the kernel drops flock locks of dead processes
    holder = subprocess.Popen([sys.executable, "-c", (
        f"import sys, time; sys.path.insert(0, {str(ROOT / 'workflow')!r})\n"
        "from repbench.extract import acquire_gpu_slot\n"
        f"s = acquire_gpu_slot({str(tmp_path)!r}, {devices!r}, wait=False)\n"
        "print(s.index, flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "0"
    assert acquire_gpu_slot(tmp_path, devices, wait=False).index == 1
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with acquire_gpu_slot(tmp_path, devices, wait=False) as slot:
        assert slot.index == 0


def test_gpu_lock_dir_is_under_results_partial():
    assert gpu_lock_dir("results/.partial/activations/docs").as_posix() == "results/.partial/gpus"
