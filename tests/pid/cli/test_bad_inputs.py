"""Bad input through the `pid` command line: one line on stderr, exit status 2, no traceback, no image.

Every case runs in its own process (forked from one driver process that imported pid
once, so the table stays cheap) with its real exit status and stderr; two cases also
go through `python -m pid` from scratch.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import pid
from pid.io.captions import save_caption_embeds
from tiny import tiny_inputs, tiny_net


class Unsafe:
    """Not a tensor: torch.load(weights_only=True) must refuse a pickle holding it."""


def _write_inputs(root: Path) -> None:
    net = tiny_net()
    pid.save_safetensors(net, root / "tiny.safetensors")
    release_format = {"net." + k: v.to(torch.bfloat16) for k, v in net.state_dict().items()}
    torch.save(release_format, root / "release_format.pth")
    (root / "config.json").write_text(json.dumps(net.config))
    (root / "broken.json").write_text("{not json")
    poisoned = dict(release_format)
    poisoned["net.final_layer.linear.weight"] = poisoned["net.final_layer.linear.weight"].clone()
    poisoned["net.final_layer.linear.weight"][0, 0] = float("nan")
    torch.save(poisoned, root / "nan_weights.pth")
    data = (root / "release_format.pth").read_bytes()
    (root / "truncated.pth").write_bytes(data[: len(data) // 2])
    (root / "empty.pth").write_bytes(b"")
    (root / "text.pth").write_text("these are not weights\n")
    (root / "model.onnx").write_bytes(data)
    (root / "garbage.safetensors").write_bytes(b"\x00garbage" * 8)
    torch.save({"net.x": Unsafe()}, root / "pickle.pth")
    torch.save([torch.zeros(1)], root / "list.pth")

    latent, _, captions = tiny_inputs(net, batch=1)
    save_file({"latent": latent}, str(root / "latent.safetensors"))
    save_file({"latent": latent[:, :4].contiguous()}, str(root / "latent_4ch.safetensors"))
    save_file({"latent": latent.to(torch.int32)}, str(root / "latent_int.safetensors"))
    save_file({"latent": latent[0, 0].contiguous()}, str(root / "latent_2d.safetensors"))
    save_file({"a": latent, "b": latent.clone()}, str(root / "latent_two.safetensors"))
    nan_latent = latent.clone()
    nan_latent.view(-1)[3] = float("nan")
    save_file({"latent": nan_latent}, str(root / "latent_nan.safetensors"))
    (root / "latent_empty.pt").write_bytes(b"")
    lat = (root / "latent.safetensors").read_bytes()
    (root / "latent_truncated.safetensors").write_bytes(lat[: len(lat) - 40])
    save_caption_embeds(root / "captions.safetensors", captions, embed_dim=None)
    save_caption_embeds(root / "captions_wide.safetensors", torch.zeros(1, 5, 41), embed_dim=None)
    (root / "captions_empty.safetensors").write_bytes(b"")


CHECKPOINT = ["--checkpoint", "tiny.safetensors"]
INPUTS = ["--latent", "latent.safetensors", "--caption-embeds", "captions.safetensors"]
GOOD = ["decode", *CHECKPOINT, *INPUTS]


def with_checkpoint(name, *more):
    return ["decode", "--checkpoint", name, *more, *INPUTS]


def with_latent(name):
    return ["decode", *CHECKPOINT, "--latent", name, "--caption-embeds", "captions.safetensors"]


def with_captions(name):
    return ["decode", *CHECKPOINT, "--latent", "latent.safetensors", "--caption-embeds", name]


# (case id, argv after `pid`, fragment the one-line message must hold)
CASES = [
    # checkpoints
    ("ckpt-missing", with_checkpoint("nope.pth"), "neither a file"),
    ("ckpt-empty", with_checkpoint("empty.pth"), "is empty (0 bytes)"),
    ("ckpt-truncated", with_checkpoint("truncated.pth"), "truncated or corrupted"),
    ("ckpt-not-a-checkpoint", with_checkpoint("text.pth"), "not a torch checkpoint"),
    ("ckpt-pickle-refused", with_checkpoint("pickle.pth"), "refused for safety"),
    ("ckpt-unsupported-format", with_checkpoint("model.onnx"), "unsupported format (.onnx)"),
    ("ckpt-bad-safetensors", with_checkpoint("garbage.safetensors"), "not a readable safetensors"),
    ("ckpt-not-a-dict", with_checkpoint("list.pth"), "holds a list"),
    ("ckpt-nan-weights", with_checkpoint("nan_weights.pth", "--config", "config.json"),
     "holds NaN/Inf in 'final_layer.linear.weight'"),
    ("ckpt-config-undetermined", with_checkpoint("release_format.pth"),
     "leave no trace in them: rope_ref_h"),
    ("config-missing", with_checkpoint("release_format.pth", "--config", "none.json"),
     "config file not found"),
    ("config-bad-json", with_checkpoint("release_format.pth", "--config", "broken.json"),
     "not valid JSON"),
    ("config-unknown-name", with_checkpoint("release_format.pth", "--config", "PiD_nope"),
     "unknown PiD checkpoint"),
    ("config-wrong-release", [*GOOD, "--config", "PiD_res2k_sr4x_official_flux_distill_4step"], "misshapen keys"),
    ("backbone-unknown", [*GOOD, "--backbone", "nope"], "unknown backbone"),
    ("backbone-wrong-channels", [*GOOD, "--backbone", "sdxl"], "gives 4-channel latents"),
    # devices, dtypes, outputs
    ("device-not-a-device", [*GOOD, "--device", "toaster"], "is not a device"),
    ("device-unsupported", [*GOOD, "--device", "meta"], "runs on cpu or cuda"),
    ("dtype-unknown", [*GOOD, "--dtype", "fp8"], "invalid choice"),
    ("out-extension", ["decode", *CHECKPOINT, *INPUTS, "--out", "image.txt"], "not an image format"),
    ("out-directory", ["decode", *CHECKPOINT, *INPUTS, "--out", "."], "is a directory"),
    # numbers
    ("sigma-text", [*GOOD, "--sigma", "abc"], "expected a number"),
    ("sigma-range", [*GOOD, "--sigma", "1.5"], "must be in [0.0, 1.0]"),
    ("sigma-nan", [*GOOD, "--sigma", "nan"], "must be in [0.0, 1.0]"),
    ("steps-zero", [*GOOD, "--steps", "0"], "must be >= 1"),
    ("steps-too-many", [*GOOD, "--steps", "9"], "1 to 4 steps"),
    ("seed-negative", [*GOOD, "--seed", "-1"], "must be in [0, "),
    ("seed-float", [*GOOD, "--seed", "1.5"], "expected an integer"),
    ("cfg-scale-inf", [*GOOD, "--sampler", "cfg", "--cfg-scale", "inf"], "must be finite"),
    ("size-text", [*GOOD, "--size", "big"], "WxH"),
    ("size-step", [*GOOD, "--size", "100x64"], "--size 64x100 (HxW) is not a multiple of the 16-pixel patch size"),
    ("size-vs-latent", [*GOOD, "--size", "128"], "expected [B, 16, 4, 4]"),
    # latents
    ("latent-missing", with_latent("none.safetensors"), "latent file not found"),
    ("latent-empty", with_latent("latent_empty.pt"), "is empty (0 bytes)"),
    ("latent-truncated", with_latent("latent_truncated.safetensors"), "not a readable safetensors"),
    ("latent-unsupported-format", with_latent("config.json"), "unsupported format (.json)"),
    ("latent-pickle-refused", with_latent("pickle.pth"), "refused for safety"),
    ("latent-channels", with_latent("latent_4ch.safetensors"), "expected [B, 16, 2, 3]"),
    ("latent-int", with_latent("latent_int.safetensors"), "expected a float latent tensor"),
    ("latent-2d", with_latent("latent_2d.safetensors"), "expected a float latent tensor"),
    ("latent-two-tensors", with_latent("latent_two.safetensors"), "name the latent tensor 'latent'"),
    ("latent-nan", with_latent("latent_nan.safetensors"), "latent contains 1 NaN/Inf"),
    # captions and negative embeddings
    ("captions-none", ["decode", *CHECKPOINT, "--latent", "latent.safetensors"], "--caption TEXT"),
    ("captions-missing", with_captions("none.safetensors"), "caption embeddings file not found"),
    ("captions-empty", with_captions("captions_empty.safetensors"), "is empty (0 bytes)"),
    ("captions-width", with_captions("captions_wide.safetensors"), "last dim must be 40"),
    ("captions-pickle-refused", with_captions("pickle.pth"), "refused for safety"),
    ("negative-none", [*GOOD, "--sampler", "cfg"], "--negative-embeds"),
    ("negative-missing", [*GOOD, "--sampler", "cfg", "--negative-embeds", "none.pt"],
     "negative embeddings file not found"),
    # demo
    ("demo-size-step", ["demo", "--size", "100"], "nearest valid: H 100 -> 96 or 128"),
    ("demo-out-extension", ["demo", "--out", "demo.txt"], "not an image format"),
    ("demo-checkpoint", ["demo", "--checkpoint", "PiD_nope"], "invalid choice"),
]
if not torch.cuda.is_available():
    CASES.append(("device-cuda-absent", [*GOOD, "--device", "cuda"], "no CUDA device is visible"))

DRIVER = textwrap.dedent(
    """
    import json, os, sys, traceback
    import torch
    torch.set_num_threads(1)
    from pid.cli.commands import main
    results = {}
    for name, argv in json.loads(sys.stdin.read()):
        err = f"{name}.stderr"
        pid_ = os.fork()
        if pid_ == 0:  # the child: one `pid` run with its own stdout/stderr and exit status
            with open(err, "w") as stream:
                os.dup2(stream.fileno(), 2)
            with open(os.devnull, "w") as stream:
                os.dup2(stream.fileno(), 1)
            try:
                code = main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code)
        results[name] = os.waitstatus_to_exitcode(os.waitpid(pid_, 0)[1])
    print(json.dumps(results))
    """
)


def _environment() -> dict:
    """This test's import path for the child processes, without a PID_DEBUG of the caller's."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("PID_DEBUG", None)
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run every case once: {case id: (exit status, stderr, files written)}."""
    root = tmp_path_factory.mktemp("bad_inputs")
    _write_inputs(root)
    table = []
    for name, argv, _ in CASES:
        with_out = argv if "--out" in argv else [*argv, "--out", f"{name}.png"]
        table.append((name, with_out))
    before = set(os.listdir(root))
    done = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(table), capture_output=True, text=True,
                          cwd=root, env=_environment(), timeout=600)
    assert done.returncode == 0, done.stderr
    statuses = json.loads(done.stdout.strip().splitlines()[-1])
    written = {f for f in set(os.listdir(root)) - before if not f.endswith(".stderr")}
    return {name: (statuses[name], (root / f"{name}.stderr").read_text(), written) for name, _ in table}


@pytest.mark.parametrize("case, argv, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(runs, case, argv, fragment):
    status, stderr, written = runs[case]
    command = argv[0]
    assert status == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pid {command}: error: "), stderr
    assert fragment in lines[0]
    assert "weights_only=False" not in stderr
    assert not [f for f in written if f.startswith(case)], written


def _python_m_pid(args, cwd, debug=False):
    env = {**_environment(), **({"PID_DEBUG": "1"} if debug else {})}
    return subprocess.run([sys.executable, "-m", "pid", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_the_real_entry_point_and_pid_debug(tmp_path):
    """From a fresh interpreter: a missing file is one line; PID_DEBUG=1 shows the traceback."""
    args = ["decode", "--checkpoint", "nope.pth", "--latent", "x.pt", "--caption-embeds", "c.pt", "--out", "o.png"]
    plain = _python_m_pid(args, tmp_path)
    assert plain.returncode == 2 and plain.stderr.strip() == "pid decode: error: latent file not found: x.pt"
    debug = _python_m_pid(args, tmp_path, debug=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "latent file not found" in debug.stderr
