import type { Browser, BrowserContextOptions, Page } from 'playwright-core';
import { launchChromium } from '../../test/support/chromium.ts';

/**
 * Headless Chromium with one empty page in a secure context, as a real app's page is (getUserMedia
 * needs one; about:blank is not): http://localhost, answered by Playwright itself. For the bench's
 * Chromium publisher and viewers, which run in processes of their own (never counted as the SFU's).
 */
export async function openLocalhostPage(
  options: BrowserContextOptions = {},
): Promise<{ browser: Browser; page: Page }> {
  const browser = await launchChromium();
  try {
    const page = await (await browser.newContext(options)).newPage();
    await page.route('http://localhost/', (route) =>
      route.fulfill({ contentType: 'text/html', body: '<!doctype html>' }),
    );
    await page.goto('http://localhost/');
    return { browser, page };
  } catch (error) {
    await browser.close();
    throw error;
  }
}
