import { Controller, Get } from '@nestjs/common';

/** ${{ values.name }}: a greeting and the probes Kubernetes calls. */
@Controller()
export class AppController {
  @Get()
  hello(): string {
    return 'Hello from ${{ values.name }}\n';
  }

  @Get('healthz')
  healthz(): string {
    return 'ok';
  }

  @Get('readyz')
  readyz(): string {
    return 'ok';
  }
}
