"""storage.parity: merge-join of streamed listings (pure), and the step against moto S3 + a Spaces endpoint."""

from __future__ import annotations

import pytest

from bot.platforms.aws.s3 import ObjectInfo
from bot.runbook.targets import AwsS3Target, DoSpacesTarget
from bot.steps.base import StepError, get_kind
from bot.steps.context import StepContext
from bot.steps.storage_parity import compare
from tests.fixtures.ecs_env import boto

MD5_A, MD5_B = "a" * 32, "b" * 32


def test_compare_kinds_of_difference():
    src = [ObjectInfo("a", 1, MD5_A), ObjectInfo("b", 2, MD5_A), ObjectInfo("c", 3, MD5_A),
           ObjectInfo("d", 4, MD5_A + "-2"), ObjectInfo("e", 5, MD5_A + "-2"), ObjectInfo("f", 6, MD5_A)]
    dst = [ObjectInfo("b", 3, MD5_A), ObjectInfo("c", 3, MD5_B), ObjectInfo("d", 4, MD5_B),
           ObjectInfo("e", 5, MD5_B + "-3"), ObjectInfo("f", 6, MD5_A), ObjectInfo("g", 1, MD5_A)]
    r = compare(src, dst)
    assert r.missing_on_target == ["a"] and r.missing_on_source == ["g"]
    assert r.size_mismatch == ["b"] and r.etag_mismatch == ["c"]
    assert r.compared_by_size == 2 and r.part_count_differs == ["d", "e"]
    assert (r.source_keys, r.target_keys, r.matched) == (6, 6, 3)
    assert compare(src, dst, compare_etags=False).etag_mismatch == []


def test_compare_caps_examples_but_counts_all():
    r = compare((ObjectInfo(f"{i:06d}", 1, MD5_A) for i in range(500)), iter(()), examples_cap=7)
    assert r.count("missing_on_target") == 500 and len(r.missing_on_target) == 7
    assert "500 key(s) missing on the target" in r.problems()[0]


def test_compare_streams_both_sides_in_step():
    """Neither listing is read ahead of the other: memory stays at a page, not the bucket."""
    read = {"src": 0, "dst": 0}

    def listing(side, n):
        for i in range(n):
            read[side] += 1
            assert abs(read["src"] - read["dst"]) <= 1
            yield ObjectInfo(f"{i:08d}", 1, MD5_A)

    r = compare(listing("src", 20_000), listing("dst", 20_000))
    assert r.matched == 20_000


def test_out_of_order_listing_is_an_error():
    with pytest.raises(StepError, match="source listing is not in key order"):
        compare([ObjectInfo("b", 1, MD5_A), ObjectInfo("a", 1, MD5_A)], [])


def _bucket(url, name, objects):
    c = boto(url, "s3")
    c.create_bucket(Bucket=name)
    for key, body in objects.items():
        c.put_object(Bucket=name, Key=key, Body=body)
    return c


def _ctx(aws):
    spaces_url = aws.url.replace("127.0.0.1", "localhost")  # a second endpoint, standing for Spaces
    targets = {"old": AwsS3Target(bucket="prod-assets", prefix="app", endpoint_url=aws.url),
               "new": DoSpacesTarget(bucket="prod-space", prefix="app", endpoint_url=spaces_url)}
    return StepContext(run_id="r", step_id="s", runbook_name="t", params={}, targets=targets, outputs={}), spaces_url


def test_seed_model_file_never_synced(aws):
    ctx, spaces_url = _ctx(aws)
    objects = {f"app/static/{i}.css": b"x" * i for i in range(30)}
    objects["app/models/projection.bin"] = b"model-bytes"
    _bucket(aws.url, "prod-assets", objects)
    spaces = _bucket(spaces_url, "prod-space", {k: v for k, v in objects.items() if "models" not in k})
    kind = get_kind("storage.parity")
    inputs = kind.Inputs(source="old", target="new", required_keys=["models/projection.bin"])
    plan = kind.plan(ctx, inputs)
    assert plan.blocking == ["required key 'models/projection.bin' is missing on new (spaces://prod-space/app)"]
    assert plan.table[1] == ["models/projection.bin", "11 bytes", "MISSING"]
    with pytest.raises(StepError, match="models/projection.bin"):
        kind.apply(ctx, inputs, plan)

    spaces.put_object(Bucket="prod-space", Key="app/models/projection.bin", Body=b"model-bytes")
    spaces.put_object(Bucket="prod-space", Key="app/extra.txt", Body=b"only here")
    plan = kind.plan(ctx, inputs)
    assert plan.blocking == []
    result = kind.apply(ctx, inputs, plan)
    assert result.outputs["source_keys"] == 31 and result.outputs["missing_on_source"] == 1
    assert "1 key(s) only on the target" in result.summary


def test_size_and_etag_mismatches_fail_unless_allowed(aws):
    ctx, spaces_url = _ctx(aws)
    _bucket(aws.url, "prod-assets", {"app/a": b"same", "app/b": b"one", "app/c": b"abc"})
    _bucket(spaces_url, "prod-space", {"app/a": b"same", "app/b": b"three", "app/c": b"xyz"})
    kind = get_kind("storage.parity")
    with pytest.raises(StepError) as exc:
        kind.apply(ctx, kind.Inputs(source="old", target="new"), None)
    assert "size differs: b" in str(exc.value) and "ETag (MD5) differs: c" in str(exc.value)
    result = kind.apply(ctx, kind.Inputs(source="old", target="new", fail_on_differences=False), None)
    assert result.outputs["size_mismatch"] == 1 and result.outputs["etag_mismatch"] == 1


def test_multipart_etag_compared_by_size(aws):
    ctx, spaces_url = _ctx(aws)
    body = b"m" * (5 * 1024 * 1024)
    src = _bucket(aws.url, "prod-assets", {})
    upload = src.create_multipart_upload(Bucket="prod-assets", Key="app/big.bin")
    part = src.upload_part(Bucket="prod-assets", Key="app/big.bin", UploadId=upload["UploadId"], PartNumber=1, Body=body)
    src.complete_multipart_upload(Bucket="prod-assets", Key="app/big.bin", UploadId=upload["UploadId"],
                                  MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    _bucket(spaces_url, "prod-space", {"app/big.bin": body})
    kind = get_kind("storage.parity")
    result = kind.apply(ctx, kind.Inputs(source="old", target="new"), None)
    assert result.outputs["compared_by_size"] == 1 and result.outputs["etag_mismatch"] == 0
    assert "compared by size and part count only" in result.summary


def test_non_store_target_is_refused(aws, tmp_path):
    from bot.runbook.targets import FileTarget

    ctx, _ = _ctx(aws)
    ctx.targets["file"] = FileTarget(path=str(tmp_path / "x"))
    kind = get_kind("storage.parity")
    with pytest.raises(StepError, match="expected aws-s3 or do-spaces"):
        kind.plan(ctx, kind.Inputs(source="old", target="file"))
