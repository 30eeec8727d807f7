"""Runs every component benchmark of unclip, PyTorch and stable-diffusion.cpp back to back, one
process per measurement, and prints one table and writes one JSON file. Called by run_all.sh, which
builds the programs and the checkpoints first; see there for the options.

Each measurement records its wall times (median of --repeats after a warm-up unless said
otherwise), the peak RSS of its process (ru_maxrss from wait4, the same for every implementation),
the 1-minute load average before it started, and GFLOP/s from bench_flops' analytic counts."""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time

import bench_flops


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run(cmd, env=None, cwd=None, stop_at=None):
    """Runs cmd, echoing its output; returns (output, peak RSS in MiB, seconds, exit status). With
    `stop_at`, the process is terminated once its output contains that string (status then 0)."""
    if os.environ.get("UNCLIP_BENCH_FIFO") == "1":
        cmd = ["chrt", "-f", "50"] + list(cmd)
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    chunks, stopped = [], False
    while True:
        data = proc.stdout.read1(65536)
        if not data:
            break
        chunks.append(data)
        sys.stdout.write(data.decode(errors="replace"))
        sys.stdout.flush()
        if stop_at and stop_at.encode() in b"".join(chunks[-2:]):
            proc.terminate()
            stopped = True
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0 if stopped else os.waitstatus_to_exitcode(status)
    return b"".join(chunks).decode(errors="replace"), usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def result_of(output):
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT "):]) if lines else None


class Bench:
    def __init__(self, args):
        self.args = args
        self.rows = []
        here = os.path.dirname(os.path.abspath(__file__))
        self.ours = os.path.join(args.build, "examples", "unclip_bench_components")
        self.torch_script = os.path.join(here, "bench_components_torch.py")
        self.torch_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}

    def record(self, impl, component, size, threads, repeats, warmup, cmd, env=None, cwd=None):
        load = loadavg()
        output, rss, wall, rc = run(cmd, env=env, cwd=cwd)
        res = result_of(output) if rc == 0 else None
        row = {"impl": impl, "component": component, "size": size, "threads": threads, "repeats": repeats,
               "warmup": warmup, "load_before": load, "load_after": loadavg(), "process_s": wall,
               "process_peak_rss_mib": rss, "ok": res is not None}
        if res:
            row.update({k: v for k, v in res.items() if k not in row or k in ("size", "threads")})
            row["gflops"] = bench_flops.flops(component, row["size"]) / row["median_s"] / 1e9
        else:
            print(f"!! {impl} {component} {size}: failed (exit status {rc})", flush=True)
        self.rows.append(row)
        return row

    def ours_row(self, component, size, threads, repeats, warmup=True):
        cmd = [self.ours, "--component", component, "--size", str(size), "--threads", str(threads),
               "--repeats", str(repeats), "--checkpoint", self.args.checkpoint] + ([] if warmup else ["--no-warmup"])
        return self.record("unclip", component, size, threads, repeats, warmup, cmd)

    def torch_row(self, component, size, threads, repeats, warmup=True):
        if not self.args.venv_python:
            return None
        cmd = [self.args.venv_python, self.torch_script, "--component", component, "--size", str(size),
               "--threads", str(threads), "--repeats", str(repeats)] + ([] if warmup else ["--no-warmup"])
        return self.record("pytorch", component, size, threads, repeats, warmup, cmd, env=self.torch_env,
                           cwd=os.path.dirname(self.torch_script))

    def sdcpp_rows(self, size, threads, wtype):
        """One sd.cpp txt2img run: its per-step times (step 1, which allocates the graphs, is the
        warm-up), the prompt encode (cond + uncond) and, with --sdcpp-vae, the VAE decode, from its log.
        Without --sdcpp-vae the run is stopped once sampling completes."""
        steps = self.args.sdcpp_steps
        out_png = os.path.join(self.args.out_dir, f"sdcpp-{size}-{wtype}.png")
        cmd = [self.args.sdcpp, "-m", self.args.sd_checkpoint,
               "-p", "a photo of an astronaut riding a horse on the moon", "-n", "blurry", "-W", str(size), "-H", str(size), "--steps", str(steps), "--cfg-scale", "7",
               "--sampling-method", "euler", "-s", "1", "-t", str(threads), "--type", wtype, "--prediction", "v",
               "-o", out_png, "-v"]
        load = loadavg()
        output, rss, wall, rc = run(cmd, stop_at=None if self.args.sdcpp_vae else "sampling completed")
        text = output.replace("\r", "\n")
        step_s = {}
        for m in re.finditer(r"\|\s*(\d+)/(\d+) - ([\d.]+)(s/it|it/s)", text):
            v = float(m.group(3))
            step_s[int(m.group(1))] = v if m.group(4) == "s/it" else 1.0 / v
        timed = sorted(v for k, v in step_s.items() if k > 1)

        def taking(what):
            m = re.search(what + r" completed, taking ([\d.]+) ?s", text)
            return float(m.group(1)) if m else None

        base = {"impl": f"sd.cpp-{wtype}", "size": size, "threads": threads, "load_before": load,
                "load_after": loadavg(), "process_s": wall, "process_peak_rss_mib": rss, "command": cmd}
        ok = rc == 0 and timed
        if not ok:
            print(f"!! sd.cpp ({wtype}) failed or printed no step times (exit status {rc})", flush=True)
        unet = dict(base, component="unet", ok=bool(ok), repeats=len(timed), warmup=True, seconds=timed,
                    first_step_s=step_s.get(1), sampling_s=taking("sampling"))
        if ok:
            unet["median_s"] = timed[len(timed) // 2]
            unet["gflops"] = bench_flops.flops("unet", size) / unet["median_s"] / 1e9
        rows = [unet]
        for component, what in (("text", "get_learned_condition"),) + ((("vae", "decode_first_stage"),)
                                                                       if self.args.sdcpp_vae else ()):
            s = taking(what)
            row = dict(base, component=component, size=77 if component == "text" else size, ok=s is not None,
                       repeats=1, warmup=False, seconds=[s] if s else [],
                       note="single run" + (", cond + uncond prompts" if component == "text" else ""))
            if s is not None:
                row["median_s"] = s
                row["gflops"] = bench_flops.flops(component, size if component == "vae" else 77) / s / 1e9
            rows.append(row)
        self.rows.extend(rows)
        return rows


def find(rows, impl, component, size, threads):
    for r in rows:
        if (r["impl"], r["component"], r["size"], r["threads"]) == (impl, component, size, threads) and r.get("ok"):
            return r
    return None


def fmt_s(r):
    return f"{r['median_s']:.3f}" if r else "-"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--build", required=True, help="unclip build folder (with examples/unclip_bench_components)")
    p.add_argument("--checkpoint", required=True, help="random sd21-unclip-h single file")
    p.add_argument("--sd-checkpoint", help="the same weights in a plain SD 2.1 768-v file, for sd.cpp")
    p.add_argument("--venv-python", help="python with torch, diffusers, transformers; none: no PyTorch peer")
    p.add_argument("--sdcpp", help="stable-diffusion.cpp's sd-cli; none: no sd.cpp peer")
    p.add_argument("--sdcpp-steps", type=int, default=4, help="sampling steps; step 1 is the warm-up")
    p.add_argument("--sdcpp-f16", action="store_true", help="also run sd.cpp with --type f16")
    p.add_argument("--sdcpp-vae", action="store_true", help="let sd.cpp decode (and time) the image too")
    p.add_argument("--scaling", action="store_true", help="also UNet at 1024 px and at 768 px on 1 thread")
    p.add_argument("--only", default="", help="comma-separated subset of gemm,text,vision,unet512,unet768,vae,"
                                               "checksum,sdcpp (for trying the harness)")
    p.add_argument("--out-dir", required=True)
    args = p.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    only = set(filter(None, args.only.split(",")))
    want = lambda name: not only or name in only
    b = Bench(args)
    t, r = args.threads, args.repeats
    started = time.time()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.node(), "cpu": cpu_model(), "cores": os.cpu_count(), "kernel": platform.release(),
            "args": vars(args), "fifo": os.environ.get("UNCLIP_BENCH_FIFO") == "1",
            "load_at_start": loadavg(), "uptime": subprocess.getoutput("uptime"),
            "unclip_commit": os.environ.get("UNCLIP_BENCH_COMMIT") or subprocess.getoutput(
                "git -C " + shlex.quote(os.path.dirname(os.path.abspath(__file__))) + " describe --always --dirty"),
            "sdcpp_commit": subprocess.getoutput("git -C " + shlex.quote(os.path.dirname(os.path.dirname(
                os.path.dirname(args.sdcpp)))) + " describe --always --dirty") if args.sdcpp else None}
    print(f"== {meta['date']}, {meta['cpu']}, {meta['cores']} cores; {meta['uptime'].strip()}", flush=True)

    if want("gemm"):
        b.ours_row("gemm", 4096, t, r)
        b.torch_row("gemm", 4096, t, r)
    if want("text"):
        b.ours_row("text", 77, t, r)
        b.torch_row("text", 77, t, r)
    if want("vision"):
        b.ours_row("vision", 224, t, r)
        b.torch_row("vision", 224, t, r)
    if want("unet512"):
        b.ours_row("unet", 512, t, r)
        b.torch_row("unet", 512, t, r)
    if want("unet768"):
        b.ours_row("unet", 768, t, r)
        b.torch_row("unet", 768, t, r)
    if want("sdcpp"):
        if args.sdcpp and args.sd_checkpoint:
            b.sdcpp_rows(768, t, "f32")
            if args.sdcpp_f16:
                b.sdcpp_rows(768, t, "f16")
        else:
            print("== sd.cpp: skipped (no sd-cli; see run_all.sh for UNCLIP_BENCH_SDCPP_DIR)", flush=True)
    if want("vae"):
        b.ours_row("vae", 768, t, r)
        b.torch_row("vae", 768, t, r)
    if want("checksum") and t != 1:
        # The same 512-px step on one thread, once: its output must equal the multi-threaded one bit for bit.
        b.ours_row("unet", 512, 1, 1, warmup=False)
    if args.scaling:
        b.ours_row("unet", 1024, t, 1)
        b.torch_row("unet", 1024, t, 1)
        b.ours_row("unet", 768, 1, 1, warmup=False)
        b.torch_row("unet", 768, 1, 1, warmup=False)

    rows = b.rows
    gemm = find(rows, "unclip", "gemm", 4096, t)
    print_table(rows, t, gemm)
    checks = [x for x in rows if x["impl"] == "unclip" and x["component"] == "unet" and x.get("checksum")]
    by_size = {}
    for x in checks:
        by_size.setdefault(x["size"], {})[x["threads"]] = x["checksum"]
    meta["thread_checksums"] = by_size
    for size, sums in sorted(by_size.items()):
        if len(sums) > 1:
            same = len(set(sums.values())) == 1
            print(f"UNet {size} px output checksum by threads: {sums} -> {'identical' if same else 'DIFFERENT'}")
    meta["load_at_end"] = loadavg()
    meta["total_s"] = time.time() - started
    path = os.path.join(args.out_dir, "results.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"wrote {path} ({meta['total_s'] / 60:.1f} min)")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_table(rows, threads, gemm):
    ceiling = gemm["gflops"] if gemm else None
    print()
    print(f"{'component':<22} {'impl':<12} {'thr':>3} {'median s':>9} {'GFLOP/s':>8} {'%GEMM':>6} {'RSS MiB':>8} "
          f"{'load':>5} {'unclip/x':>8}")
    for x in rows:
        if not x.get("ok"):
            print(f"{x['component'] + ' ' + str(x['size']):<22} {x['impl']:<12} {x['threads']:>3} {'failed':>9}")
            continue
        ours = find(rows, "unclip", x["component"], x["size"], x["threads"])
        ratio = f"{ours['median_s'] / x['median_s']:.2f}" if ours and x is not ours else ""
        pct = f"{100 * x['gflops'] / ceiling:.0f}%" if ceiling and x["component"] != "gemm" else ""
        print(f"{x['component'] + ' ' + str(x['size']):<22} {x['impl']:<12} {x['threads']:>3} {x['median_s']:>9.3f} "
              f"{x['gflops']:>8.1f} {pct:>6} {x['process_peak_rss_mib']:>8.0f} {x['load_before']:>5.2f} {ratio:>8}")
    if ceiling:
        print(f"ceiling: unclip fp32 GEMM 4096^3 on {threads} threads = {ceiling:.1f} GFLOP/s; %GEMM = GFLOP/s over it")


if __name__ == "__main__":
    main()
