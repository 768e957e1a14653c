export { freePort } from '../../scripts/stack.ts';
