"""`pid serve` on a local Ray cluster bound to 127.0.0.1 (num_cpus=2), bounded in requests and time.

One cluster for the module (Ray takes tens of seconds to start on 2 cores): outputs equal a
direct `pid.Decoder` decode, 32 concurrent requests are all answered in batches, a full queue
answers 503, and a replica killed under load loses no request.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import pid
from spawn_ranks import free_port
from tiny import tiny_inputs, tiny_net

ray = pytest.importorskip("ray", reason="the serve extra (ray[serve]) is not installed")
serve = pytest.importorskip("ray.serve")
pytestmark = pytest.mark.serve

from pid.serve.app import build_app, deployment_options  # noqa: E402
from pid.serve.main import start  # noqa: E402
from pid.serve.protocol import decode_image_tensor, encode_decode_request  # noqa: E402

REQUEST_TIMEOUT_S = 60
RETRIES = 5
# A batched decode's GEMMs block rows differently from a batch of one: float rounding only.
BATCHED_REL_L2 = 1e-6


def _rel_l2(ours, ref):
    return ((ours.double() - ref.double()).norm() / ref.double().norm()).item()


def _post(url: str, body: bytes, timeout: float = REQUEST_TIMEOUT_S):
    """(status, headers, body) of one POST; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _post_with_retry(url: str, body: bytes):
    """Retry what a client should retry (503 back-pressure, 5xx from a dying replica, a reset
    connection); returns the last answer and how many tries it took."""
    for attempt in range(1, RETRIES + 1):
        try:
            status, headers, content = _post(url, body)
        except (ConnectionError, urllib.error.URLError) as error:
            status, headers, content = None, {}, str(error).encode()
        if status == 200 or (status is not None and status < 500):
            return status, headers, content, attempt
        time.sleep(0.5 * attempt)
    return status, headers, content, RETRIES


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("serve") / "tiny.safetensors"
    net = tiny_net()
    pid.save_safetensors(net, checkpoint)
    url = start(str(checkpoint), port=free_port(), num_cpus=2, dtype="fp32", replicas=2, gpus_per_replica=0,
                cpus_per_replica=0.5, max_batch_size=4, batch_wait_timeout_s=0.2, max_queued_requests=64)
    # One slot and a queue of one: the back-pressure test fills it.
    narrow = build_app(str(checkpoint), dtype="fp32", replicas=1, gpus_per_replica=0, cpus_per_replica=0.5,
                       max_batch_size=1, max_queued_requests=1)
    serve.run(narrow, name="narrow", route_prefix="/narrow")
    yield url, net
    serve.shutdown()
    ray.shutdown()


def _request(net, seed):
    latent, _, captions = tiny_inputs(net, batch=1, seed=seed)
    return latent, captions, encode_decode_request(latent[0], captions[0])


def test_health_and_decode_equal_a_direct_decode(server):
    url, net = server
    with urllib.request.urlopen(f"{url}/health", timeout=REQUEST_TIMEOUT_S) as response:
        assert response.status == 200 and b'"ok"' in response.read()
    latent, captions, body = _request(net, seed=4)
    status, headers, content = _post(f"{url}/decode?sigma=0.3&seed=9&format=tensor", body)
    assert status == 200, content
    expected = pid.Decoder(net).decode(latent, 0.3, captions, seed=9)[0]
    assert torch.equal(decode_image_tensor(content), expected)
    status, headers, png = _post(f"{url}/decode?sigma=0.3&seed=9", body)
    assert status == 200 and headers["content-type"] == "image/png" and png.startswith(b"\x89PNG")


def test_bad_request_says_what_is_wrong(server):
    url, _ = server
    status, _, content = _post(f"{url}/decode", b"not a safetensors file")
    assert status == 400 and b"safetensors" in content


def test_32_concurrent_requests_all_answered_in_batches(server):
    url, net = server
    requests = [_request(net, seed) for seed in range(32)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda item: _post(f"{url}/decode?seed={item[0]}&format=tensor", item[1][2]),
                                enumerate(requests)))
    assert [status for status, _, _ in answers] == [200] * 32
    batch_sizes = [int(headers["x-pid-batch-size"]) for _, headers, _ in answers]
    assert max(batch_sizes) > 1, batch_sizes
    for seed in (0, 31):  # batched images equal single decodes up to GEMM rounding
        latent, captions, _ = requests[seed]
        expected = pid.Decoder(net).decode(latent, 0.0, captions, seed=seed)[0]
        assert _rel_l2(decode_image_tensor(answers[seed][2]), expected) <= BATCHED_REL_L2


def test_a_full_queue_answers_503(server):
    url, net = server
    latent, captions = tiny_inputs(net, batch=1, image_hw=(256, 256))[::2]
    body = encode_decode_request(latent[0], captions[0])
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda seed: _post(f"{url}/narrow/decode?seed={seed}", body), range(16)))
    statuses = sorted(status for status, _, _ in answers)
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses


def test_a_replica_killed_under_load_drops_no_request(server):
    url, net = server
    pids = set()
    for _ in range(20):
        with urllib.request.urlopen(f"{url}/health", timeout=REQUEST_TIMEOUT_S) as response:
            pids.add(__import__("json").loads(response.read())["replica_pid"])
        if len(pids) > 1:
            break
    latent, captions = tiny_inputs(net, batch=1, image_hw=(256, 256))[::2]
    body = encode_decode_request(latent[0], captions[0])
    with ThreadPoolExecutor(max_workers=24) as pool:
        futures = [pool.submit(_post_with_retry, f"{url}/decode?seed={i}", body) for i in range(24)]
        time.sleep(0.3)
        os.kill(min(pids), signal.SIGKILL)
        answers = [future.result(timeout=4 * REQUEST_TIMEOUT_S) for future in futures]
    assert len(answers) == 24
    for status, _, content, attempts in answers:  # answered, or failed with a reason
        assert status == 200 or content, (status, content, attempts)
    assert sum(status == 200 for status, *_ in answers) >= 1


def test_multi_gpu_replicas_reserve_their_gpus_as_one_placement_group():
    """Configuration only: no multi-GPU machine here to run such a replica."""
    options = deployment_options(replicas=2, gpus_per_replica=4)
    assert options["placement_group_bundles"] == [{"CPU": 1.0, "GPU": 1}] + [{"GPU": 1}] * 3
    assert options["placement_group_strategy"] == "STRICT_PACK"
    assert deployment_options(gpus_per_replica=1)["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1}
