// The Backstage catalog module: `backend.add(import('@paved/backstage-plugin-catalog-backend-module-paved'))`
// and, in app-config.yaml:
//
//   paved:
//     url: https://paved.example.com:50051
//     token: ${PAVED_PLUGIN_TOKEN}   # the installation's plugin token
import { coreServices, createBackendModule } from '@backstage/backend-plugin-api';
import { catalogProcessingExtensionPoint } from '@backstage/plugin-catalog-node';
import { PavedClient } from './client';
import { PavedEntityProvider } from './provider';

export { PavedClient, type PavedClientOptions } from './client';
export { PavedEntityProvider, type PavedEntityProviderOptions } from './provider';
export { diff, entityKey, parseExport, type Snapshot } from './entities';

export const catalogModulePaved = createBackendModule({
  pluginId: 'catalog',
  moduleId: 'paved',
  register(env) {
    env.registerInit({
      deps: {
        catalog: catalogProcessingExtensionPoint,
        config: coreServices.rootConfig,
        logger: coreServices.logger,
        lifecycle: coreServices.rootLifecycle,
      },
      async init({ catalog, config, logger, lifecycle }) {
        const url = config.getString('paved.url');
        const client = new PavedClient({
          url,
          token: config.getString('paved.token'),
          protoDir: config.getOptionalString('paved.protoDir'),
        });
        const provider = new PavedEntityProvider({
          client,
          logger,
          url,
          batchMs: config.getOptionalNumber('paved.batchMs'),
        });
        catalog.addEntityProvider(provider);
        lifecycle.addShutdownHook(() => provider.stop());
      },
    });
  },
});

export default catalogModulePaved;
