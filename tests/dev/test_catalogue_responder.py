"""The fake LLM behind `jobqueue dev` answers the workers' schemas with valid, product-specific JSON."""

from workers.jobs.collections import TITLES_PROMPT, CollectionTitles
from workers.jobs.products import ENRICHMENT_SYSTEM_PROMPT, ProductEnrichment
from workers.providers.llm import OpenAIProvider
from workers.testing import FakeOpenAI, catalogue_responder

PRODUCT_PROMPT = (
    "name: Herb garden window kit\nbrand: Sill & Soil\ncategory: garden\ntags: herbs, indoor\n"
    "description: Basil, parsley and chives with pots. For a sunny sill.\nprice_pence: 1800"
)


async def _provider(server):
    return OpenAIProvider(
        api_key="fake-key", base_url=server.base_url, model="gpt-test", embedding_model="embed", dims=16
    )


async def test_enrichment_answer_fits_the_schema_and_describes_the_product():
    with FakeOpenAI(dims=16, responder=catalogue_responder) as server:
        provider = await _provider(server)
        try:
            enrichment = await provider.complete_json(
                ENRICHMENT_SYSTEM_PROMPT, PRODUCT_PROMPT, ProductEnrichment, schema_name="product_enrichment"
            )
        finally:
            await provider.aclose()
    assert enrichment.summary == "Herb garden window kit: Basil, parsley and chives with pots."
    assert enrichment.tags == ["garden", "herbs", "indoor"]
    assert "parent" in enrichment.recipients and enrichment.style == "everyday"


async def test_collection_titles_name_every_group_in_order():
    listing = "Surface: home\n1. Mug (home); Throw (home)\n2. Notebook (stationery); Pen (stationery); Oven (kitchen)"
    with FakeOpenAI(dims=16, responder=catalogue_responder) as server:
        provider = await _provider(server)
        try:
            titles = await provider.complete_json(
                TITLES_PROMPT, listing, CollectionTitles, schema_name="collection_titles"
            )
        finally:
            await provider.aclose()
    assert [c.title for c in titles.collections] == ["Home favourites", "Stationery and more"]
    assert titles.collections[1].description == "3 hand-picked stationery gifts, starting with Notebook."


async def test_other_requests_get_the_default_answer():
    with FakeOpenAI(dims=16, responder=catalogue_responder) as server:
        provider = await _provider(server)
        try:
            vectors = await provider.embed(["a", "b"])
        finally:
            await provider.aclose()
    assert [len(v) for v in vectors] == [16, 16]
    assert catalogue_responder({"messages": [{"role": "user", "content": "hi"}]}) == "OK"
