"""The development stack that ``jobqueue dev`` starts: an embedded Redis, the five workers, fakes
for the outside services, and demo data."""
