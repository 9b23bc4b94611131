import { Test } from '@nestjs/testing';
import { AppController } from './app.controller';

describe('AppController', () => {
  it('greets', async () => {
    const module = await Test.createTestingModule({ controllers: [AppController] }).compile();
    expect(module.get(AppController).hello()).toBe('Hello from payments-api\n');
  });
});
