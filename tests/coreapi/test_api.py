import jobqueue


def test_all_is_complete_and_sorted():
    public = {
        name
        for name, value in vars(jobqueue).items()
        if not name.startswith("_") and not isinstance(value, type(jobqueue))
    }
    assert set(jobqueue.__all__) == public
    assert jobqueue.__all__ == sorted(jobqueue.__all__, key=lambda n: (not n.isupper(), n))


def test_queue_names_match_the_seed():
    assert jobqueue.QUEUE_NAMES == {
        "PRODUCT_EMBEDDING": "product-embedding",
        "PRODUCT_ENRICHMENT": "product-enrichment",
        "TASTE_PROFILE_EMBEDDING": "taste-profile-embedding",
        "CURATED_COLLECTIONS": "curated-collections",
        "REMINDER_DISPATCH": "reminder-dispatch",
    }
    assert set(jobqueue.QUEUES) == set(jobqueue.QUEUE_NAMES.values())


def test_importing_opens_no_connection():
    from jobqueue.backend import connection

    assert not connection._clients or connection._clients_loop is not None
