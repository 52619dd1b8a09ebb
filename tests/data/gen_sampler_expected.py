#!/usr/bin/env python3
"""Generates tests/data/sampler_expected.h: expected final latents of the four samplers on an analytic fake
denoiser, computed by an independent numpy/scipy re-implementation of the upstream formulas (CompVis ldm
DDIMSampler; diffusers PNDMScheduler, LMSDiscreteScheduler, EulerDiscreteScheduler), with torch's
float32/float64 split mirrored by numpy dtypes. Not used by the build; rerun by hand:

    /usr/bin/python3 tests/data/gen_sampler_expected.py /work/shared/reference > tests/data/sampler_expected.h

Needs numpy and scipy (Debian: python3-numpy python3-scipy). The DDIM eta>0 case takes its per-step noise
from the reference tensor rng.seed0.shape1x4x64x64 (torch.manual_seed(0); torch.randn), which equals 64
consecutive torch.randn(1,4,8,8) draws because 256 is a multiple of torch's 16-value Box-Muller block.
"""
import json
import struct
import sys

import numpy as np
from scipy import integrate

f32 = np.float32
NUMEL = 256


def read_safetensors(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        info = header[name]
        start, end = info["data_offsets"]
        f.seek(8 + n + start)
        assert info["dtype"] == "F32"
        return np.frombuffer(f.read(end - start), dtype=np.float32).copy()


def x_T():
    k = np.arange(NUMEL)
    return (((k * 37) % 101 - 50).astype(np.float32) / f32(25.0)).astype(np.float32)


def fake_eps(x, t):
    # the analytic denoiser of test_samplers.c, in float32: 0.1*x + 0.01*(t/1000)
    return (f32(0.1) * x + f32(0.01) * (f32(t) / f32(1000.0))).astype(np.float32)


# ---- schedules ----
def ldm_alphas_cumprod():
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas).astype(np.float32)


def fma32(a, b, c):
    return f32(np.float64(a) * np.float64(b) + np.float64(c))


def torch_linspace_f32(start, end, steps):
    start, end = f32(start), f32(end)
    step = f32((end - start) / f32(steps - 1))
    half = steps // 2
    out = np.zeros(steps, dtype=np.float32)
    vec = steps // 16 * 16
    for i in range(0, vec, 8):
        base = fma32(step, f32(i), start) if i < half else fma32(-step, f32(steps - i - 1), end)
        out[i] = base
        out[i + 1] = f32(base + step)
        for lane in range(2, 8):
            out[i + lane] = fma32(f32(lane), step, base)
    for i in range(vec, steps):
        out[i] = fma32(step, f32(i), start) if i < half else fma32(-step, f32(steps - i - 1), end)
    return out


def diffusers_alphas_cumprod():
    betas = (torch_linspace_f32(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2).astype(np.float32)
    alphas = (f32(1.0) - betas).astype(np.float32)
    return np.cumprod(alphas.astype(np.float64)).astype(np.float32)  # torch cumprod accumulates in double


# ---- ldm DDIM ----
def ddim(steps, eta, noise_source=None):
    ac = ldm_alphas_cumprod()
    c = 1000 // steps
    ddim_timesteps = np.arange(0, steps) * c + 1
    alphas = ac[ddim_timesteps]
    alphas_prev = np.asarray([ac[0]] + ac[ddim_timesteps[:-1]].tolist(), dtype=np.float64)
    sigmas = eta * np.sqrt((1 - alphas_prev) / (f32(1) - alphas).astype(np.float64)
                           * (1 - alphas.astype(np.float64) / alphas_prev))
    sqrt_one_minus = np.sqrt(f32(1) - alphas).astype(np.float32)
    x = x_T()
    for i, step in enumerate(np.flip(ddim_timesteps)):
        index = steps - i - 1
        e = fake_eps(x, step)
        a_t, a_prev = f32(alphas[index]), f32(alphas_prev[index])
        sigma_t = f32(sigmas[index])
        pred_x0 = (x - sqrt_one_minus[index] * e) / np.sqrt(a_t)
        dir_xt = np.sqrt(f32(1) - a_prev - sigma_t * sigma_t) * e
        x_prev = np.sqrt(a_prev) * pred_x0 + dir_xt
        if noise_source is not None:
            x_prev = x_prev + sigma_t * noise_source[i * NUMEL:(i + 1) * NUMEL]
        x = x_prev.astype(np.float32)
    return x


# ---- diffusers PNDM (skip_prk_steps, leading, offset 1) ----
def pndm(steps):
    ac = diffusers_alphas_cumprod()
    ratio = 1000 // steps
    ts = (np.arange(0, steps) * ratio).round() + 1
    plms = np.concatenate([ts[:-1], ts[-2:-1], ts[-1:]])[::-1].astype(np.int64)

    def prev_sample(sample, t, tp, mo):
        a = ac[t]
        ap = ac[tp] if tp >= 0 else ac[0]
        b, bp = f32(1) - a, f32(1) - ap
        coeff = np.sqrt(ap / a)
        denom = a * np.sqrt(bp) + np.sqrt(a * b * ap)
        return (coeff * sample - (ap - a) * mo / denom).astype(np.float32)

    x = x_T()
    ets, cur_sample = [], None
    for counter, t in enumerate(plms):
        t = int(t)
        mo = fake_eps(x, t)
        prev_t = t - ratio
        if counter != 1:
            ets = ets[-3:]
            ets.append(mo)
        else:
            prev_t = t
            t = t + ratio
        sample = x
        if len(ets) == 1 and counter == 0:
            cur_sample = x
        elif len(ets) == 1 and counter == 1:
            mo = (mo + ets[-1]) / f32(2)
            sample = cur_sample
        elif len(ets) == 2:
            mo = (f32(3) * ets[-1] - ets[-2]) / f32(2)
        elif len(ets) == 3:
            mo = (f32(23) * ets[-1] - f32(16) * ets[-2] + f32(5) * ets[-3]) / f32(12)
        else:
            mo = f32(1 / 24) * (f32(55) * ets[-1] - f32(59) * ets[-2] + f32(37) * ets[-3] - f32(9) * ets[-4])
        x = prev_sample(sample, t, prev_t, mo.astype(np.float32))
    return x


# ---- diffusers LMS / Euler ('linspace') ----
def linspace_sigmas(steps):
    ac = diffusers_alphas_cumprod()
    timesteps = np.linspace(0, 999, steps, dtype=np.float32)[::-1].copy()
    train = np.sqrt((f32(1) - ac) / ac).astype(np.float32)
    sigmas = np.interp(timesteps, np.arange(0, len(train)), train)
    return timesteps, np.concatenate([sigmas, [0.0]]).astype(np.float32)


def lms_coefficient(sigmas, order, t, current_order):
    def lms_derivative(tau):
        prod = f32(1.0)
        for k in range(order):
            if current_order == k:
                continue
            prod = f32(prod * f32(f32(f32(tau) - sigmas[t - k]) / f32(sigmas[t - current_order] - sigmas[t - k])))
        return float(prod)
    return integrate.quad(lms_derivative, float(sigmas[t]), float(sigmas[t + 1]), epsrel=1e-4)[0]


def lms(steps, coeff_log):
    timesteps, sigmas = linspace_sigmas(steps)
    x = (x_T() * sigmas.max()).astype(np.float32)
    derivatives = []
    for i, t in enumerate(timesteps):
        sigma = sigmas[i]
        scaled = (x / np.sqrt(sigma * sigma + f32(1))).astype(np.float32)
        e = fake_eps(scaled, t)
        pred = x - sigma * e
        derivatives.append(((x - pred) / sigma).astype(np.float32))
        if len(derivatives) > 4:
            derivatives.pop(0)
        order = min(i + 1, 4)
        coeffs = [lms_coefficient(sigmas, order, i, c) for c in range(order)]
        coeff_log.append((steps, order, i, coeffs))
        total = None
        for coeff, d in zip(coeffs, reversed(derivatives)):
            term = (f32(coeff) * d).astype(np.float32)
            total = term if total is None else (total + term).astype(np.float32)
        x = (x + total).astype(np.float32)
    return x


def euler(steps):
    timesteps, sigmas = linspace_sigmas(steps)
    x = (x_T() * sigmas.max()).astype(np.float32)
    for i, t in enumerate(timesteps):
        sigma = sigmas[i]
        scaled = (x / np.sqrt(sigma * sigma + f32(1))).astype(np.float32)
        e = fake_eps(scaled, t)
        pred = x - sigma * e
        derivative = (x - pred) / sigma
        dt = sigmas[i + 1] - sigma
        x = (x + derivative * dt).astype(np.float32)
    return x


def emit(name, arr):
    print(f"static const float {name}[{len(arr)}] = {{")
    for i in range(0, len(arr), 6):
        print("    " + ", ".join(f"{float(v):.9g}f" for v in arr[i:i + 6]) + ",")
    print("};")


def main():
    ref = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference"
    noise = read_safetensors(f"{ref}/tiny-sd1/vectors.safetensors", "rng.seed0.shape1x4x64x64")
    print("/* Generated by tests/data/gen_sampler_expected.py (numpy/scipy re-implementation of upstream"
          " samplers). Do not edit. */")
    print(f"#define EXPECTED_NUMEL {NUMEL}")
    emit("expected_ddim_s10", ddim(10, 0.0))
    emit("expected_ddim_s5", ddim(5, 0.0))
    emit("expected_ddim_s10_eta05_seed0", ddim(10, 0.5, noise))
    emit("expected_pndm_s10", pndm(10))
    emit("expected_pndm_s4", pndm(4))
    coeff_log = []
    emit("expected_lms_s8", lms(8, coeff_log))
    emit("expected_lms_s3", lms(3, coeff_log))
    emit("expected_euler_s7", euler(7))
    emit("expected_euler_s20", euler(20))
    print("/* scipy.integrate.quad LMS coefficients: steps, order, step index, current order, value */")
    print("static const struct { int steps, order, t, current_order; double value; } expected_lms_coeffs[] = {")
    for steps, order, t, coeffs in coeff_log:
        for c, v in enumerate(coeffs):
            print(f"    {{{steps}, {order}, {t}, {c}, {v!r}}},")
    print("};")
    print("/* diffusers alphas_cumprod at a few indices (torch float32 linspace emulation) */")
    ac = diffusers_alphas_cumprod()
    idx = [0, 1, 7, 250, 499, 500, 503, 504, 991, 992, 999]
    print("static const struct { int index; float value; } expected_diffusers_ac[] = {")
    for i in idx:
        print(f"    {{{i}, {float(ac[i]):.9g}f}},")
    print("};")


if __name__ == "__main__":
    main()
