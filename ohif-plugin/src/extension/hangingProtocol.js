// One stack viewport with the LGE series: the MR series that the latest SEG references is
// preferred (custom attribute registered by the extension), else the first MR series.
import { HP_ID } from './ids.js';

export const LGE_ATTRIBUTE = 'lgeReviewIsLatestSegSource';

export const lgeReviewProtocol = {
  id: HP_ID,
  name: 'Cardiac LGE review',
  description: 'LGE series referenced by the latest AI segmentation, one stack viewport',
  protocolMatchingRules: [],
  toolGroupIds: ['default'],
  displaySetSelectors: {
    lge: {
      seriesMatchingRules: [
        { attribute: 'numImageFrames', constraint: { greaterThan: { value: 0 } }, required: true },
        { attribute: 'Modality', constraint: { equals: { value: 'MR' } }, weight: 5 },
        { attribute: LGE_ATTRIBUTE, constraint: { equals: { value: true } }, weight: 50 },
      ],
    },
  },
  stages: [
    {
      name: 'LGE',
      viewportStructure: { layoutType: 'grid', properties: { rows: 1, columns: 1 } },
      viewports: [
        {
          viewportOptions: { viewportId: 'lge-review', viewportType: 'stack', toolGroupId: 'default', allowUnmatchedView: true },
          displaySets: [{ id: 'lge' }],
        },
      ],
    },
  ],
};
