"""Product embedding and LLM enrichment."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, Field

from jobqueue import (
    EntityNotFoundError,
    ProductEmbeddingJobPayload,
    ProductEmbeddingJobResult,
    ProductEnrichmentJobPayload,
    ProductEnrichmentJobResult,
)
from workers.providers.batching import embed_counted
from workers.providers.llm import answer_counted
from workers.providers.store import ProductRecord
from workers.resources import resources
from workers.steps import Steps

# An enrichment's steps, reported with update_progress as each starts (workers.steps). Embeddings
# have one step (a batched request) and report none.
ENRICHMENT_STEPS = ("enriching", "storing")


def canonical_text(product: ProductRecord) -> str:
    """The text that is embedded: stable field order, so the same product hashes the same."""
    parts = [
        f"name: {product.name}",
        f"brand: {product.brand or ''}",
        f"category: {product.category or ''}",
        f"tags: {', '.join(sorted(product.tags))}",
        f"description: {product.description}",
    ]
    return "\n".join(parts)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _product(ctx: dict[str, Any], product_id: str) -> ProductRecord:
    product = await resources(ctx).store.get_product(product_id)
    if product is None:
        raise EntityNotFoundError(f"product {product_id!r} does not exist")
    return product


async def product_embedding(ctx: dict[str, Any], payload: ProductEmbeddingJobPayload) -> ProductEmbeddingJobResult:
    """Embed the product's canonical text, unless that text is unchanged since the last embedding."""
    res = resources(ctx)
    io = res.product_io or res.store  # grouped with the process's other embedding jobs when set
    product = await io.get_product(payload.product_id)
    if product is None:
        raise EntityNotFoundError(f"product {payload.product_id!r} does not exist")
    text = canonical_text(product)
    digest = text_hash(text)
    done = {"status": "skipped", "product_id": product.id, "text_hash": digest}
    if product.text_hash == digest and product.embedding is not None:
        return ProductEmbeddingJobResult(**done, reason="text unchanged since the stored embedding")
    if payload.previous_text_hash == digest:
        return ProductEmbeddingJobResult(**done, reason="text unchanged (previous_text_hash)")
    embeddings = res.embeddings
    if payload.batch_lane:  # parks the job until its batch has answered (workers.providers.batchlane)
        # Its tokens and cost are the submission's (``jobqueue batches``), counted when it ends.
        vector, usage = await res.batch_lane.embed(ctx["job_id"], text, sync=embeddings.embed), None
    else:
        # Shares a request with the process's other embedding jobs, or the vector of the same text.
        embedded = await embed_counted(embeddings, text)
        vector, usage = embedded.vector, embedded.usage
    # Written only if the product still has this text: a run left behind, or one that read the text
    # just before an edit, never replaces the vector of the newer text.
    if not await io.save_product_embedding(product.id, vector, digest, embeddings.embedding_model, source=product):
        reason = "the product's text changed during this run: vector not stored"
        return ProductEmbeddingJobResult(**done, reason=reason, usage=usage)
    return ProductEmbeddingJobResult(
        status="processed",
        product_id=product.id,
        text_hash=digest,
        model=embeddings.embedding_model,
        dims=len(vector),
        usage=usage,
    )


class ProductEnrichment(BaseModel):
    """What the LLM adds to a product; validated before anything is stored."""

    summary: str = Field(min_length=1, max_length=600)
    tags: list[str] = Field(max_length=12)
    occasions: list[str] = Field(max_length=8)
    recipients: list[str] = Field(max_length=8)
    style: str | None = None


ENRICHMENT_SYSTEM_PROMPT = (
    "You write metadata for a gift-shopping catalogue. Given a product, return a one-sentence "
    "summary, up to 12 short lowercase tags, the occasions it suits (birthday, anniversary, ...), "
    "the recipients it suits (partner, parent, child, friend, colleague, ...) and its style."
)


async def product_enrichment(ctx: dict[str, Any], payload: ProductEnrichmentJobPayload) -> ProductEnrichmentJobResult:
    """Ask the LLM for metadata (JSON schema), validate it, store it with its version."""
    res = resources(ctx)
    product = await _product(ctx, payload.product_id)
    current = res.env.enrichment_version
    stored = max(product.enrichment_version, payload.current_enrichment_version or 0)
    same_prompt = payload.prompt_version is None or payload.prompt_version == product.prompt_version
    if stored >= current and product.enrichment is not None and same_prompt:
        return ProductEnrichmentJobResult(
            status="skipped",
            product_id=product.id,
            enrichment_version=product.enrichment_version,
            prompt_version=product.prompt_version,
            reason=f"enrichment version {product.enrichment_version} is current",
        )
    steps = Steps(ctx, ENRICHMENT_STEPS)
    await steps.start("enriching")
    prompt = canonical_text(product) + f"\nprice_pence: {product.price}"
    if payload.batch_lane:  # parks the job until its batch has answered (workers.providers.batchlane)
        enrichment = await res.batch_lane.complete_json(
            ctx["job_id"],
            ENRICHMENT_SYSTEM_PROMPT,
            prompt,
            ProductEnrichment,
            schema_name="product_enrichment",
            sync=res.llm.complete_json,
        )
        usage = None  # the submission's (``jobqueue batches``), counted when it ends
    else:
        answered = await answer_counted(
            res.llm, ENRICHMENT_SYSTEM_PROMPT, prompt, ProductEnrichment, schema_name="product_enrichment"
        )
        enrichment, usage = answered.value, answered.usage
    await steps.start("storing")
    stored_now = await res.store.save_product_enrichment(
        product.id, enrichment.model_dump(mode="json"), current, payload.prompt_version, source=product
    )
    await steps.done()
    # Not stored if the product changed meanwhile (text or price) or a newer version was stored.
    fenced = "the product changed or a newer enrichment was stored during this run: enrichment not stored"
    return ProductEnrichmentJobResult(
        status="processed" if stored_now else "skipped",
        product_id=product.id,
        enrichment_version=current,
        prompt_version=payload.prompt_version,
        reason=None if stored_now else fenced,
        usage=usage,
    )
