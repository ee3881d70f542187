-- Run once by the postgres image, when its data volume is new: each koe service owns
-- a database of its own (none reads another's tables). The names match the
-- DATABASE_URLs in docker-compose.yml; tests/test_compose.py checks that they do.
CREATE DATABASE koe_feedback;
CREATE DATABASE koe_aggregator;
CREATE DATABASE koe_notifier;
