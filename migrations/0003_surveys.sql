-- surveys projection: surveys, anonymous responses, micro-survey offers.

CREATE TABLE survey_surveys (
    id               text PRIMARY KEY,
    title            text NOT NULL,
    nps_question     text NOT NULL,
    comment_question text,
    scale_questions  jsonb NOT NULL,
    -- Team names; [] means everyone.
    audience         jsonb NOT NULL,
    opens_at         timestamptz NOT NULL,
    closes_at        timestamptz NOT NULL,
    closed_at        timestamptz,
    -- Event type that offers this survey to whoever causes it.
    trigger          text,
    created_at       timestamptz NOT NULL,
    last_sequence    bigint NOT NULL
);
CREATE INDEX survey_surveys_trigger ON survey_surveys (trigger) WHERE trigger IS NOT NULL;

-- One row per pseudonym and survey: never a principal.
CREATE TABLE survey_responses (
    survey       text NOT NULL,
    pseudonym    text NOT NULL,
    team         text,
    nps          smallint NOT NULL,
    comment      text NOT NULL,
    scales       jsonb NOT NULL,
    submitted_at timestamptz NOT NULL,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (survey, pseudonym)
);

-- Micro-surveys offered to the principal who caused the trigger event.
CREATE TABLE survey_offers (
    survey         text NOT NULL,
    principal      text NOT NULL,
    offered_at     timestamptz NOT NULL,
    event_sequence bigint NOT NULL,
    PRIMARY KEY (survey, principal)
);
CREATE INDEX survey_offers_principal ON survey_offers (principal);
