import { Controller, Get } from '@nestjs/common';

/** payments-api: a greeting and the probes Kubernetes calls. */
@Controller()
export class AppController {
  @Get()
  hello(): string {
    return 'Hello from payments-api\n';
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
