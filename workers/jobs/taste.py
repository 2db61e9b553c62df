"""Taste-profile embedding."""

from __future__ import annotations

import json
from typing import Any

from jobqueue import (
    EntityNotFoundError,
    PermanentJobError,
    TasteProfileEmbeddingJobPayload,
    TasteProfileEmbeddingJobResult,
)
from workers.providers.batching import embed_counted
from workers.resources import resources


def profile_text(answers: dict[str, Any]) -> str:
    """One ``key: value`` line per answer, keys sorted, so equal profiles embed the same text."""
    lines = []
    for key in sorted(answers):
        value = answers[key]
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


async def taste_profile_embedding(
    ctx: dict[str, Any], payload: TasteProfileEmbeddingJobPayload
) -> TasteProfileEmbeddingJobResult:
    """Embed a taste profile once: a profile that already has a vector is skipped."""
    res = resources(ctx)
    profile = await res.store.get_taste_profile(payload.taste_profile_id)
    if profile is None:
        raise EntityNotFoundError(f"taste profile {payload.taste_profile_id!r} does not exist")
    if profile.user_id != payload.user_id:
        raise EntityNotFoundError(f"taste profile {profile.id!r} does not belong to user {payload.user_id!r}")
    if profile.vector is not None:
        return TasteProfileEmbeddingJobResult(
            status="skipped", taste_profile_id=profile.id, model=profile.vector_model, reason="vector exists"
        )
    text = profile_text(profile.answers)
    if not text:
        raise PermanentJobError(f"taste profile {profile.id!r} has no answers to embed")
    embeddings = res.embeddings
    if payload.batch_lane:  # parks the job until its batch has answered (workers.providers.batchlane)
        # Its tokens and cost are the submission's (``jobqueue batches``), counted when it ends.
        vector, usage = await res.batch_lane.embed(ctx["job_id"], text, sync=embeddings.embed), None
    else:
        embedded = await embed_counted(embeddings, text)  # shares a request with the process's other embedding jobs
        vector, usage = embedded.vector, embedded.usage
    # Written only if the profile still has these answers: a stale vector would stay for good, as
    # the next run skips a profile that has one.
    if not await res.store.save_taste_profile_vector(profile.id, vector, embeddings.embedding_model, source=profile):
        reason = "the profile's answers changed during this run: vector not stored"
        return TasteProfileEmbeddingJobResult(status="skipped", taste_profile_id=profile.id, reason=reason, usage=usage)
    return TasteProfileEmbeddingJobResult(
        status="processed",
        taste_profile_id=profile.id,
        model=embeddings.embedding_model,
        dims=len(vector),
        usage=usage,
    )
