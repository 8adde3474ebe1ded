"""The NVIDIA check's verdicts against a fake NVML: healthy, XID/ECC/heat/slowdown named, no driver."""

import asyncio
import sys
import types

from appliance.health.status import Status
from healthcheck.checks.nvidia import NvidiaAccelerator


def _fake_nvml(temp=60, ecc=0, xid=None, throttle=0):
    nv = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    events = [types.SimpleNamespace(device="h0", eventData=xid)] if xid else []
    nv.NVMLError = NVMLError
    nv.NVML_TEMPERATURE_GPU = 0
    nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    nv.NVML_VOLATILE_ECC = 0
    nv.nvmlEventTypeXidCriticalError = 8
    nv.nvmlClocksThrottleReasonHwSlowdown = 0x8
    nv.nvmlInit = lambda: None
    nv.nvmlShutdown = lambda: None
    nv.nvmlEventSetCreate = lambda: "set"
    nv.nvmlDeviceRegisterEvents = lambda h, t, s: None

    def wait(s, timeout):
        if events:
            return events.pop()
        raise NVMLError("timeout")

    nv.nvmlEventSetWait_v2 = wait
    nv.nvmlDeviceGetCount = lambda: 1
    nv.nvmlDeviceGetHandleByIndex = lambda i: "h0"
    nv.nvmlDeviceGetIndex = lambda h: 0
    nv.nvmlDeviceGetTemperature = lambda h, kind: temp
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=10, total=80)
    nv.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=50)
    nv.nvmlDeviceGetPowerUsage = lambda h: 300000
    nv.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: throttle
    nv.nvmlDeviceGetTotalEccErrors = lambda h, a, b: ecc
    return nv


def _probe(monkeypatch, **kw):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(**kw))
    return asyncio.run(NvidiaAccelerator(30).probe())


def test_nvidia_healthy(monkeypatch):
    r = _probe(monkeypatch)
    assert r.status == Status.OK and r.values["gpu0"]["power_w"] == 300.0


def test_nvidia_xid_ecc_heat_and_slowdown_are_named(monkeypatch):
    assert "XID 79" in _probe(monkeypatch, xid=79).reason
    assert "uncorrected ECC" in _probe(monkeypatch, ecc=2).reason
    assert "92 °C" in _probe(monkeypatch, temp=92).reason
    assert "hardware slowdown" in _probe(monkeypatch, throttle=0x8).reason


def test_nvidia_without_driver(monkeypatch):
    nv = _fake_nvml()

    def no_driver():
        raise nv.NVMLError("Driver Not Loaded")

    nv.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    r = asyncio.run(NvidiaAccelerator(30).probe())
    assert r.status == Status.FAILED and "driver not loaded or GPU lost" in r.reason
