// A stock Backstage backend (the catalog from npm) with this module: what
// the end-to-end test runs, and a way to try the module by hand:
//
//   npm run build && PAVED_PLUGIN_TOKEN=pvp_… npm start -- --config app-config.yaml
import { createBackend } from '@backstage/backend-defaults';

const backend = createBackend();
backend.add(import('@backstage/plugin-catalog-backend'));
backend.add(import('../src'));
backend.start();
