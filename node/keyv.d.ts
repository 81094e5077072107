import { EventEmitter } from 'node:events'
import type { CacheOptions } from './index'

/** Keyv storage adapter backed by stratacache (Keyv 5, cache-manager 7, cacheable). */
export declare class KeyvStratacache extends EventEmitter {
  constructor(options?: CacheOptions)
  opts: CacheOptions & { namespace: string }
  namespace?: string
  get<T = unknown>(key: string): Promise<T | undefined>
  getMany<T = unknown>(keys: string[]): Promise<Array<T | undefined>>
  set(key: string, value: unknown, ttl?: number): Promise<boolean>
  delete(key: string): Promise<boolean>
  deleteMany(keys: string[]): Promise<boolean>
  has(key: string): Promise<boolean>
  clear(): Promise<void>
  disconnect(): Promise<void>
}
export default KeyvStratacache
