-- Survey responses keep no times: with the database alone, a response's
-- time could be matched against a micro-survey offer (which names the
-- person offered) or against who was active when. Results need none.
ALTER TABLE survey_responses DROP COLUMN submitted_at, DROP COLUMN changed_at;
